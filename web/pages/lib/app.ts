/**
 * What every Haven page shares: reading /config.json, connecting with the SDK, showing
 * the connection's state, Quick Exit, friendly error text, and a chat log.
 *
 * Privacy rules every page follows (tests/web checks them): nothing is written to any
 * browser storage or cookie, nothing goes in the query string, nothing is fetched from
 * any origin but the page's own and the relay's, and text from the network is only ever
 * put in the page as text (`textContent`), never as HTML.
 */
import {
  ConnectionLost, ErrorCode, Haven, HavenError, defaultSolver, type ConnectionState, type PowSolver,
  type Room, type Sent,
} from "../../sdk/src/index.js";
import { installQuickExit } from "../quick-exit.js";

export interface PageConfig {
  relay_url: string;
  relay_key: string;
  quick_exit_url: string;
}

/** The element with `id` (a page's HTML and its script are written together). */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** Build an element with text content only (no HTML parsing of network data, ever). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") el.className = value;
    else el.setAttribute(name, value);
  }
  for (const child of children) el.append(child);
  return el;
}

export function show(el: HTMLElement, visible = true): void {
  el.hidden = !visible;
}

/** /config.json from the page's own origin: where the relay is and its pinned key. */
export async function loadConfig(): Promise<PageConfig> {
  const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new Error("the page's configuration could not be loaded");
  return (await response.json()) as PageConfig;
}

/** Proofs of work run in a Web Worker (pow-worker.js, same origin), so the page stays live. */
export function pageSolver(): PowSolver {
  return defaultSolver(new URL("pow-worker.js", location.href));
}

const FRIENDLY: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.BAD_CODE]: "That code does not look right. Check it and try again.",
  [ErrorCode.ROOM_NOT_FOUND]: "That room does not exist or has ended.",
  [ErrorCode.ROOM_FULL]: "That room is full.",
  [ErrorCode.ROOM_LOCKED]: "That room is locked by its moderators.",
  [ErrorCode.NOT_OPEN_YET]: "That room is not open yet.",
  [ErrorCode.MUTED]: "A moderator has paused your messages for now.",
  [ErrorCode.RATE_LIMITED]: "You are sending very fast. Wait a moment and try again.",
  [ErrorCode.QUEUE_FULL]: "Everyone is busy and the line is full. Please try again in a little while.",
  [ErrorCode.QUEUE_EMPTY]: "Nobody is waiting right now.",
  [ErrorCode.HANDOFF_CODE_INVALID]: "That code is not valid. Check it with the person who read it to you.",
  [ErrorCode.HANDOFF_CODE_LOCKED]: "That code was tried too many times. Ask for a new one.",
  [ErrorCode.TOKEN_INVALID]: "That sign-in token is not valid.",
  [ErrorCode.TOKEN_EXPIRED]: "That sign-in token has expired. Get a new one.",
  [ErrorCode.TOKEN_UNTRUSTED]: "That sign-in token is not from this service.",
  [ErrorCode.UNAUTHORIZED]: "Sign in first.",
  [ErrorCode.FORBIDDEN]: "Your sign-in does not allow that.",
  [ErrorCode.RESUME_FAILED]: "The connection was away too long and the conversation could not be restored.",
  [ErrorCode.RELAY_BUSY]: "The service is very busy. Please try again in a minute.",
  [ErrorCode.TOO_LARGE]: "That message is too long.",
  [ErrorCode.ITEM_NOT_FOUND]: "That message was already handled.",
  [ErrorCode.MEMBER_NOT_FOUND]: "That member is not here (or is away) right now.",
  [ErrorCode.PENDING_FULL]: "Too many messages are waiting for a moderator. Try again soon.",
};

/** Text for people: what went wrong and what to do, never a code dump. */
export function describe(error: unknown): string {
  if (error instanceof ConnectionLost) return "The connection dropped. Trying again…";
  if (error instanceof HavenError) {
    const friendly = FRIENDLY[error.code];
    if (friendly !== undefined) return friendly;
    return `Something went wrong (${error.code}). Please try again.`;
  }
  return "Something went wrong. Please try again.";
}

/**
 * What to say under a message whose send failed. A drop while the request was in flight
 * leaves the outcome unknown (the relay may have delivered it), so say exactly that.
 */
export function sendFailed(error: unknown): string {
  if (error instanceof ConnectionLost) return "the connection dropped while sending; it may not have arrived";
  return `not sent: ${describe(error)}`;
}

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: "Connecting securely…",
  connected: "Connected securely.",
  reconnecting: "Connection lost. Reconnecting… nothing you wrote is lost.",
  resumed: "Connected securely.",
  closed: "Disconnected.",
};

/**
 * Connect to the relay named in the config, keeping `status` (an aria-live region)
 * in step with the connection's state. `onClosed` runs when the SDK gives up.
 */
export async function connectRelay(config: PageConfig, status: HTMLElement,
                                   onClosed?: (error?: Error) => void): Promise<Haven> {
  status.textContent = STATE_TEXT.connecting;
  status.dataset["state"] = "connecting";
  const haven = await Haven.connect({
    url: config.relay_url, relayKey: config.relay_key, solver: pageSolver(),
  });
  status.textContent = STATE_TEXT.connected;
  status.dataset["state"] = "connected";
  // Back online: reconnect now rather than when the backoff timer next fires.
  window.addEventListener("online", () => haven.retryNow());
  haven.on("state", ({ state, error }) => {
    status.dataset["state"] = state;
    status.textContent = state === "closed" && error !== undefined
      ? "Disconnected. Reload the page to start again." : STATE_TEXT[state];
    if (state === "closed") onClosed?.(error);
  });
  return haven;
}

/**
 * Quick Exit (button and Esc twice) for this page: clears the page, closes the
 * connection, and replaces the history entry with the neutral address.
 */
export function quickExitFor(getConfig: () => PageConfig | null, getHaven: () => Haven | null): void {
  installQuickExit(
    $("quick-exit"),
    () => getConfig()?.quick_exit_url ?? "about:blank",
    () => void getHaven()?.close(),
  );
}

/** Put a one-line notice (errors and confirmations) into `el`, read out politely. */
export function notify(el: HTMLElement, text: string, kind: "info" | "error" = "info"): void {
  el.textContent = text;
  el.dataset["kind"] = kind;
}

const decoder = new TextDecoder("utf-8", { fatal: false });
export const bodyText = (body: Uint8Array): string => decoder.decode(body);

/**
 * A chat log: a focusable, scrollable `role="log"` region (so keyboard users can scroll
 * it) holding an ordered list of messages and system lines, newest last.
 */
export class ChatLog {
  /**
   * Send what `box` holds to `room`, showing it at once as "sending…"; the note goes when
   * the relay acknowledges, says "waiting for a moderator" if it is held, or says why it
   * failed. Resolves with `sent` (null if nothing was sent or it failed).
   */
  async sendFrom(box: HTMLTextAreaElement, room: Room | null, onHeld?: (item: number, line: HTMLElement) => void): Promise<Sent | null> {
    const text = box.value.trim();
    if (room === null || text === "") return null;
    box.value = "";
    const line = this.message("You", text, { mine: true, note: "sending…" });
    const note = line.querySelector(".note")!;
    try {
      const sent = await room.send(text);
      if (sent.item !== undefined) {
        note.textContent = "waiting for a moderator";
        onHeld?.(sent.item, line);
      } else {
        note.remove();
      }
      return sent;
    } catch (error) {
      note.textContent = sendFailed(error);
      return null;
    }
  }

  private readonly list: HTMLElement;

  constructor(readonly region: HTMLElement) {
    const existing = region.querySelector("ol");
    this.list = existing ?? region.appendChild(h("ol"));
  }

  /** A new, empty log region labelled `label` (for panels built by script). */
  static create(label: string): ChatLog {
    return new ChatLog(h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": label, tabindex: "0" }));
  }

  clear(): void {
    this.list.replaceChildren();
  }

  message(who: string, text: string, options: { mine?: boolean; edited?: boolean; note?: string } = {}): HTMLElement {
    const meta = h("span", { class: "who" }, options.mine === true ? "You" : who);
    const item = h("li", { class: options.mine === true ? "msg mine" : "msg" }, meta, h("span", { class: "text" }, text));
    if (options.edited === true) item.append(h("span", { class: "note" }, "edited by a moderator"));
    if (options.note !== undefined) item.append(h("span", { class: "note" }, options.note));
    this.add(item);
    return item;
  }

  system(text: string, kind: "info" | "alert" = "info"): HTMLElement {
    const item = h("li", { class: `system ${kind}` }, text);
    this.add(item);
    return item;
  }

  private add(item: HTMLElement): void {
    this.list.append(item);
    this.region.scrollTop = this.region.scrollHeight;
  }
}

/** Presence events as a sentence for the log. */
export function presenceText(alias: string, event: string, self = "Someone"): string {
  const who = alias || self;
  switch (event) {
    case "joined": return `${who} joined.`;
    case "left": return `${who} left.`;
    case "away": return `${who}'s connection dropped; they may be back in a moment.`;
    case "back": return `${who} is back.`;
    case "removed": return `${who} was removed by a moderator.`;
    default: return `${who}: ${event}.`;
  }
}

/** Why a room ended, in words. */
export function closedText(reason: string): string {
  switch (reason) {
    case "expired": return "This conversation has ended (it was idle for too long).";
    case "schedule": return "This session has ended for today.";
    case "taken_over": return "This conversation continued in another window.";
    default: return "This conversation has ended.";
  }
}

/** Run `task`, showing its error in `el`; the button is disabled while it runs. */
export async function act(control: HTMLElement | null, el: HTMLElement, task: () => Promise<void>): Promise<void> {
  const button = control as HTMLButtonElement | null;
  if (button !== null) button.disabled = true;
  try {
    await task();
  } catch (error) {
    notify(el, describe(error), "error");
  } finally {
    if (button !== null) button.disabled = false;
  }
}

/**
 * Enter sends, Shift+Enter starts a new line (the usual chat convention); `onTyping`
 * runs on other keys, at most once every three seconds.
 */
export function enterSends(box: HTMLTextAreaElement, send: () => void, onTyping?: () => void): void {
  let last = 0;
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    } else if (onTyping !== undefined && Date.now() - last > 3000) {
      last = Date.now();
      onTyping();
    }
  });
}

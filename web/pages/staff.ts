/**
 * Staff console: sign in with a staff token, go on or off duty, watch the queue's
 * counts (with crisis-priority visitors flagged), take the next visitor, chat, create a
 * spoken handoff code to escalate to a responder by phone, and end a conversation.
 */
import { ErrorCode, HavenError, type Haven, type Room } from "../sdk/src/index.js";
import {
  $, ChatLog, act, enterSends, bodyText, closedText, connectRelay, describe, h, loadConfig, notify, presenceText,
  quickExitFor, show, type PageConfig,
} from "./lib/app.js";

/** Seconds between refreshes of the queue counts (the relay has no push for them). */
const COUNTS_EVERY_MS = 3000;

let config: PageConfig | null = null;
let haven: Haven | null = null;
let onDuty = false;
const notice = $("notice");

function queue(): string {
  return $<HTMLSelectElement>("queue").value;
}

async function refreshCounts(): Promise<void> {
  if (haven === null || !haven.connected) return;
  const counts = await haven.request("staff_count", { queue: queue() });
  $("on-duty").textContent = String(counts["count"]);
  $("waiting").textContent = String(counts["waiting"] ?? "–");
  const priority = Number(counts["priority"] ?? 0);
  $("priority").textContent = String(priority);
  $("priority").classList.toggle("flag", priority > 0);
  show($("priority-flag"), priority > 0);
}

function chatPanel(room: Room): void {
  const id = `chat-${document.querySelectorAll("#chats > section").length + 1}`;
  const log = ChatLog.create("Conversation");
  const list = log.region;
  const typing = h("p", { class: "typing", "aria-live": "polite" });
  const box = h("textarea", { id: `${id}-msg`, rows: "2", maxlength: "4000", placeholder: "Write a message" });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "row", autocomplete: "off" },
    h("label", { for: `${id}-msg`, class: "visually-hidden" }, "Your message"), box, send);
  const handoff = h("button", { type: "button", class: "secondary" }, "Escalate: bring in a responder by phone");
  const code = h("p", { class: "big", "aria-live": "assertive" });
  const codeHint = h("p", { class: "hint" });
  const close = h("button", { type: "button", class: "danger" }, "End conversation");
  const local = h("p", { class: "notice", role: "alert" });
  const title = h("h2", { id: `${id}-title` }, "Conversation with a visitor");
  const panel = h("section", { class: "card chat", "aria-labelledby": `${id}-title`, "data-room": "1" },
    title);
  if (room.priority) {
    panel.append(h("p", { class: "flag" }, "Crisis escalation: this visitor raised a crisis flag in a peer group."));
  }
  panel.append(list, typing, form, local, h("div", { class: "row" }, handoff, close), code, codeHint);
  $("chats").prepend(panel);
  log.system("You took the next visitor. Say hello.");
  box.focus();

  let visitor = "Visitor";
  room.on("event", (event) => {
    switch (event.t) {
      case "deliver":
        visitor = event.sender;
        typing.textContent = "";
        log.message("Visitor", bodyText(event.body));
        break;
      case "typing_event":
        typing.textContent = "The visitor is typing…";
        setTimeout(() => (typing.textContent = ""), 4000);
        break;
      case "presence":
        log.system(presenceText(event.alias === visitor ? "The visitor" : event.alias, event.event));
        break;
      case "room_closed":
        log.system(closedText(event.reason));
        break;
      default:
        break;
    }
  });
  room.on("end", (error) => {
    if (error !== null) log.system(describe(error), "alert");
    for (const control of [box, send, handoff, close]) control.setAttribute("disabled", "");
  });
  const submit = () => log.sendFrom(box, room);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit();
  });
  enterSends(box, () => void submit(), () => room.typing().catch(() => undefined));
  handoff.addEventListener("click", () => void act(handoff, local, async () => {
    const invite = await room.handoffInvite();
    code.textContent = invite.code;
    codeHint.textContent = `Read this code to the responder on the phone. It works once, for ${Math.round(invite.expires_in / 60)} minutes.`;
    log.system("You created a handoff code for a responder.");
  }));
  close.addEventListener("click", () => void act(close, local, async () => {
    await room.close();
  }));
}

async function signIn(): Promise<void> {
  if (haven === null) return;
  const input = $<HTMLInputElement>("token");
  const authed = await haven.auth(input.value);
  input.value = "";
  if (authed.role !== "staff") throw new HavenError(ErrorCode.FORBIDDEN, "not a staff token");
  const queues = (authed.queues ?? []).filter((q) => q !== "*");
  const select = $<HTMLSelectElement>("queue");
  select.replaceChildren(...(queues.length > 0 ? queues : ["helpline"]).map((q) => h("option", { value: q }, q)));
  $("queue-name").textContent = queue();
  const until = new Date(authed.expires * 1000);
  $("whoami").textContent = `Signed in as staff until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`;
  show($("signin"), false);
  show($("queue-panel"), true);
  $("duty").focus();
  await refreshCounts();
  setInterval(() => void refreshCounts().catch(() => undefined), COUNTS_EVERY_MS);
}

async function main(): Promise<void> {
  quickExitFor(() => config, () => haven);
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void act($("signin-button"), notice, async () => {
      notify(notice, "");
      await signIn();
    });
  });
  $("queue").addEventListener("change", () => {
    $("queue-name").textContent = queue();
    void refreshCounts();
  });
  $("duty").addEventListener("click", () => void act($("duty"), notice, async () => {
    await haven?.duty(queue(), !onDuty);
    onDuty = !onDuty;
    $("duty").setAttribute("aria-pressed", String(onDuty));
    $("duty").textContent = onDuty ? "Go off duty" : "Go on duty";
    await refreshCounts();
  }));
  $("take").addEventListener("click", () => void act($("take"), notice, async () => {
    if (haven === null) return;
    notify(notice, "");
    chatPanel(await haven.takeNext(queue()));
    await refreshCounts();
  }));
  try {
    config = await loadConfig();
    haven = await connectRelay(config, $("status"));
    $<HTMLButtonElement>("signin-button").disabled = false;
  } catch (error) {
    notify(notice, `Cannot reach the service right now. ${describe(error)}`, "error");
  }
}

void main();

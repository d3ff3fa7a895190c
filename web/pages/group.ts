/**
 * Peer group room (in the style of a safe help room): join from the directory, by code,
 * or by a link whose #fragment carries the code (read, then removed from the address bar;
 * a fragment is never sent to any server). Ground rules are shown before the first
 * message; the member's own alias is shown. A crisis button alerts the moderators, who
 * may move the member into a helpline's priority lane for a private conversation.
 */
import {
  codeFromFragment, parseRoomCode, roomLink, type Haven, type QueueTicket, type Room, type RoomInfo,
} from "../sdk/src/index.js";
import {
  $, ChatLog, act, enterSends, bodyText, closedText, connectRelay, describe, h, loadConfig, notify, presenceText,
  quickExitFor, show, type PageConfig,
} from "./lib/app.js";

let config: PageConfig | null = null;
let haven: Haven | null = null;
let room: Room | null = null;
const notice = $("notice");
const log = new ChatLog($("log"));
/** My own messages in a pre-moderated room, by item number, to mark a denial. */
const held = new Map<number, HTMLElement>();

// Read the code from the fragment first thing, then drop it from the address bar and
// history entry so it is not left on screen or in the history list.
const linked = codeFromFragment(location.hash);
if (location.hash !== "") history.replaceState(null, "", location.pathname);

function minutes(seconds: number): string {
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min`;
  return `${Math.round(seconds / 3600)} h`;
}

async function loadDirectory(): Promise<void> {
  if (haven === null) return;
  const rooms: RoomInfo[] = await haven.directory();
  const list = $("directory");
  list.replaceChildren();
  if (rooms.length === 0) list.append(h("li", {}, "No groups are listed right now."));
  for (const info of rooms) {
    const title = h("strong", {}, info.topic || "Untitled group");
    const detail = h("span", { class: "hint" },
      info.open === true
        ? ` — open now${info.members > 0 ? `, ${info.members}+ people` : ""}${info.premoderated === true ? ", moderated" : ""}`
        : ` — opens in ${minutes(info.opens_in ?? 0)}${info.schedule ? ` (${info.schedule})` : ""}`);
    const item = h("li", {}, title, detail);
    if (info.open === true && info.room !== undefined) {
      const code = info.room;
      const button = h("button", { type: "button", class: "secondary", "aria-label": `Join ${info.topic || "group"}` }, "Join");
      button.addEventListener("click", () => void act(button, notice, () => join(code)));
      item.append(" ", button);
    }
    list.append(item);
  }
}

async function join(code: string): Promise<void> {
  if (haven === null) return;
  notify(notice, "");
  const r = await haven.join(parseRoomCode(code));
  room = r;
  const seat = r.seat;
  $("topic").textContent = seat.topic ?? "a peer support group";
  $("chat-topic").textContent = seat.topic ?? "Peer support group";
  $("alias-intro").textContent = r.alias;
  $("alias").textContent = r.alias;
  $("members").textContent = `${seat.members} here.`;
  $("rules").textContent = seat.rules ?? "Be kind. Keep what others share private. Never share anything that identifies anyone.";
  show($("premod-hint"), seat.premoderated === true);
  $<HTMLInputElement>("invite").value = roomLink(new URL("group.html", location.href).href, r.code);
  show($("find"), false);
  show($("rules-card"), true);
  $("agree").focus();
  r.on("event", (event) => {
    switch (event.t) {
      case "deliver":
        $("typing").textContent = "";
        log.message(event.sender, bodyText(event.body), { edited: event.edited === true });
        break;
      case "presence":
        $("members").textContent = `${event.members} here.`;
        log.system(presenceText(event.alias, event.event));
        break;
      case "announcement":
        log.system(`Moderator: ${bodyText(event.body)}`, "alert");
        break;
      case "moderation":
        log.system(event.action === "locked" ? "A moderator locked the group: nobody new can join."
          : event.action === "unlocked" ? "A moderator unlocked the group."
          : `A moderator ${event.action} ${event.alias === r.alias ? "you" : event.alias ?? "someone"}.`);
        break;
      case "typing_event":
        $("typing").textContent = `${event.alias} is typing…`;
        setTimeout(() => ($("typing").textContent = ""), 4000);
        break;
      case "denied": {
        const note = held.get(event.item)?.querySelector(".note");
        if (note) note.textContent = `not posted by a moderator${event.reason ? `: ${event.reason}` : ""}`;
        break;
      }
      case "removed":
        log.system("A moderator removed you from this group.", "alert");
        break;
      case "room_closed":
        log.system(closedText(event.reason), "alert");
        break;
      default:
        break;
    }
  });
  r.on("end", (error) => {
    if (error !== null) log.system(describe(error), "alert");
    $<HTMLButtonElement>("send").disabled = true;
    $<HTMLButtonElement>("crisis").disabled = true;
  });
}


function privateSupport(ticket: QueueTicket): void {
  show($("help"), true);
  const line = $("help-line");
  line.textContent = `A helpline worker will talk with you privately. You are number ${ticket.position} in line.`;
  ticket.on("position", (e) => (line.textContent = `You are number ${e.position} in line for a private conversation.`));
  ticket.room().then((r) => {
    line.textContent = "A helpline worker is with you. This conversation is private.";
    const helpLog = new ChatLog($("help-log"));
    show($("help-log"), true);
    show($("help-compose"), true);
    r.on("event", (event) => {
      if (event.t === "deliver") helpLog.message("Helpline worker", bodyText(event.body));
      else if (event.t === "room_closed") helpLog.system(closedText(event.reason));
    });
    $("help-compose").addEventListener("submit", (event) => {
      event.preventDefault();
      void helpLog.sendFrom($<HTMLTextAreaElement>("help-message"), r);
    });
  }, () => undefined);
}

async function main(): Promise<void> {
  quickExitFor(() => config, () => haven);
  $("code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void act($("code-button"), notice, () => join($<HTMLInputElement>("code").value));
  });
  $("agree").addEventListener("click", () => {
    show($("rules-card"), false);
    show($("chat"), true);
    log.system("Welcome. Take your time; you can just read if you prefer.");
    $("message").focus();
  });
  enterSends($<HTMLTextAreaElement>("message"), () => void log.sendFrom($<HTMLTextAreaElement>("message"), room, (item, line) => held.set(item, line)), () => room?.typing().catch(() => undefined));
  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    void log.sendFrom($<HTMLTextAreaElement>("message"), room, (item, line) => held.set(item, line));
  });
  $("crisis").addEventListener("click", () => void act($("crisis"), notice, async () => {
    await room?.crisis();
    log.system("The moderators have been alerted and will reach out. If you are in danger, call your local emergency number.", "alert");
  }));
  $("leave").addEventListener("click", () => void act($("leave"), notice, async () => {
    await room?.leave();
    room = null;
    show($("chat"), false);
    show($("find"), true);
    log.clear();
    await loadDirectory();
  }));
  try {
    config = await loadConfig();
    haven = await connectRelay(config, $("status"));
    haven.on("ticket", privateSupport);
    $<HTMLButtonElement>("code-button").disabled = false;
    if (linked !== null) await act(null, notice, () => join(linked));
    else await loadDirectory();
  } catch (error) {
    notify(notice, `Cannot reach the service right now. ${describe(error)}`, "error");
  }
}

void main();

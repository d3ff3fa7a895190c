/**
 * Visitor chat: ask for help, see the place in line move, chat one-to-one with staff, and
 * survive network drops (the SDK resumes; nothing is lost or doubled), then leave.
 */
import type { Haven, QueueTicket, Room } from "../sdk/src/index.js";
import {
  $, ChatLog, act, enterSends, bodyText, closedText, connectRelay, describe, loadConfig, notify, quickExitFor,
  show, type PageConfig,
} from "./lib/app.js";

let config: PageConfig | null = null;
let haven: Haven | null = null;
let ticket: QueueTicket | null = null;
let room: Room | null = null;
const queue = document.querySelector("main")?.dataset["queue"] ?? "helpline";
const notice = $("notice");
const log = new ChatLog($("log"));
const panels = ["start", "waiting", "chat", "ended"] as const;

function view(name: (typeof panels)[number]): void {
  for (const panel of panels) show($(panel), panel === name);
}

function ended(text: string): void {
  room = null;
  ticket = null;
  $("ended-why").textContent = text;
  view("ended");
  $("again").focus();
}

function enterRoom(r: Room): void {
  room = r;
  view("chat");
  log.system("A helpline worker has joined. You can start writing whenever you are ready.");
  let typingTimer: ReturnType<typeof setTimeout> | undefined;
  r.on("event", (event) => {
    switch (event.t) {
      case "deliver":
        $("typing").textContent = "";
        log.message("Helpline worker", bodyText(event.body));
        break;
      case "typing_event":
        $("typing").textContent = "The helpline worker is typing…";
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => ($("typing").textContent = ""), 4000);
        break;
      case "presence":
        if (event.event === "away") log.system("The helpline worker's connection dropped; they should be back shortly.");
        else if (event.event === "back") log.system("The helpline worker is back.");
        else if (event.event === "joined") log.system("Another helpline worker joined the conversation.");
        else if (event.event === "left") log.system("A helpline worker left the conversation.");
        break;
      case "room_closed":
        ended(closedText(event.reason));
        break;
      default:
        break;
    }
  });
  r.on("end", (error) => {
    if (error !== null) ended(describe(error));
  });
  $<HTMLTextAreaElement>("message").focus();
}

async function ask(): Promise<void> {
  if (haven === null) return;
  notify(notice, "");
  const t = await haven.requestHelp(queue);
  ticket = t;
  $("position").textContent = String(t.position);
  view("waiting");
  $("cancel").focus();
  t.on("position", (event) => ($("position").textContent = String(event.position)));
  t.on("end", (error) => {
    if (error !== null) ended(describe(error));
  });
  t.room().then(enterRoom, () => undefined);
}


async function main(): Promise<void> {
  quickExitFor(() => config, () => haven);
  $("ask").addEventListener("click", () => void act($("ask"), notice, ask));
  $("cancel").addEventListener("click", () => void act($("cancel"), notice, async () => {
    await ticket?.cancel();
    ticket = null;
    view("start");
  }));
  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    void log.sendFrom($<HTMLTextAreaElement>("message"), room);
  });
  enterSends($<HTMLTextAreaElement>("message"), () => void log.sendFrom($<HTMLTextAreaElement>("message"), room),
    () => room?.typing().catch(() => undefined));
  $("leave").addEventListener("click", () => void act($("leave"), notice, async () => {
    await room?.leave();
    ended("You ended the conversation. Take care of yourself.");
  }));
  $("again").addEventListener("click", () => {
    log.clear();
    view("start");
    $("ask").focus();
  });
  try {
    config = await loadConfig();
    haven = await connectRelay(config, $("status"));
    haven.on("state", ({ state }) => {
      if (room === null) return;
      if (state === "reconnecting") log.system("Your connection dropped. Reconnecting… nothing you wrote is lost.");
      else if (state === "resumed") log.system("Reconnected.");
    });
    $<HTMLButtonElement>("ask").disabled = false;
  } catch (error) {
    notify(notice, `Cannot reach the service right now. ${describe(error)}`, "error");
  }
}

void main();

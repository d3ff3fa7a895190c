/**
 * Responder: present a responder token and the spoken one-time code a staff member read
 * out on the phone, then join that direct conversation. A wrong code is refused (and
 * after five wrong tries anywhere the code is locked).
 */
import type { Haven, Room } from "../sdk/src/index.js";
import {
  $, ChatLog, act, enterSends, bodyText, closedText, connectRelay, describe, loadConfig, notify, presenceText,
  quickExitFor, show, type PageConfig,
} from "./lib/app.js";

let config: PageConfig | null = null;
let haven: Haven | null = null;
let room: Room | null = null;
let authed = false;
const notice = $("notice");
const log = new ChatLog($("log"));

function enter(r: Room): void {
  room = r;
  show($("accept"), false);
  show($("chat"), true);
  log.system("You joined. The staff member and the visitor can see your messages.");
  r.on("event", (event) => {
    if (event.t === "deliver") log.message(event.sender, bodyText(event.body));
    else if (event.t === "presence") log.system(presenceText(event.alias, event.event));
    else if (event.t === "room_closed") log.system(closedText(event.reason));
  });
  r.on("end", (error) => {
    if (error !== null) log.system(describe(error), "alert");
    $<HTMLButtonElement>("send").disabled = true;
  });
  $("message").focus();
}


async function main(): Promise<void> {
  quickExitFor(() => config, () => haven);
  $("accept-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void act($("accept-button"), notice, async () => {
      if (haven === null) return;
      notify(notice, "");
      if (!authed) {
        await haven.auth($<HTMLInputElement>("token").value);
        $<HTMLInputElement>("token").value = "";
        $<HTMLInputElement>("token").required = false;
        $<HTMLInputElement>("token").disabled = true;
        authed = true;
      }
      const code = $<HTMLInputElement>("code");
      const r = await haven.handoffAccept(code.value);
      code.value = "";
      enter(r);
    });
  });
  enterSends($<HTMLTextAreaElement>("message"), () => void log.sendFrom($<HTMLTextAreaElement>("message"), room), () => room?.typing().catch(() => undefined));
  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    void log.sendFrom($<HTMLTextAreaElement>("message"), room);
  });
  $("leave").addEventListener("click", () => void act($("leave"), notice, async () => {
    await room?.leave();
    log.system("You left the conversation.");
  }));
  try {
    config = await loadConfig();
    haven = await connectRelay(config, $("status"));
    $<HTMLButtonElement>("accept-button").disabled = false;
  } catch (error) {
    notify(notice, `Cannot reach the service right now. ${describe(error)}`, "error");
  }
}

void main();

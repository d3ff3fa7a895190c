/**
 * Moderator console: sign in with a moderator token, see listed and scheduled rooms
 * (open now or when they open), join one as its moderator, decide on held messages
 * (approve, edit, deny), mute / remove members, lock, close, announce, and answer crisis
 * flags by moving the member into the helpline's priority lane.
 */
import {
  ErrorCode, HavenError, roomLink, type Haven, type PendingItem, type Room, type RoomInfo,
} from "../sdk/src/index.js";
import {
  $, ChatLog, act, bodyText, closedText, connectRelay, describe, h, loadConfig, notify, presenceText,
  quickExitFor, show, type PageConfig,
} from "./lib/app.js";

/** The intake queue crisis flags are escalated to. */
const CRISIS_QUEUE = document.querySelector("main")?.dataset["queue"] ?? "helpline";

let config: PageConfig | null = null;
let haven: Haven | null = null;
const notice = $("notice");
const panels = new Map<string, HTMLElement>();
let panelCount = 0;

function minutes(seconds: number): string {
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min`;
  return `${Math.round(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

async function loadDirectory(): Promise<void> {
  if (haven === null) return;
  const rooms: RoomInfo[] = await haven.directory();
  const list = $("directory");
  list.replaceChildren();
  if (rooms.length === 0) list.append(h("li", {}, "No listed or scheduled rooms."));
  for (const info of rooms) {
    const state = info.open === true
      ? `open now · about ${info.members} ${info.members === 1 ? "member" : "members"}`
      : `closed · opens in ${minutes(info.opens_in ?? 0)}`;
    const item = h("li", {},
      h("strong", {}, info.topic || "Untitled room"),
      h("span", { class: "hint" }, ` — ${state}${info.schedule ? ` · ${info.schedule}` : ""}${info.premoderated === true ? " · pre-moderated" : ""}`));
    if (info.open === true && info.room !== undefined) {
      const code = info.room;
      const button = h("button", { type: "button", class: "secondary", "aria-label": `Moderate ${info.topic || "room"}` }, "Moderate");
      button.addEventListener("click", () => void act(button, notice, async () => {
        if (panels.has(code)) {
          panels.get(code)!.querySelector("h2")?.focus();
          return;
        }
        panel(await haven!.join(code));
      }));
      item.append(" ", button);
    }
    list.append(item);
  }
}

function panel(room: Room): void {
  const id = `room-${++panelCount}`;
  const local = h("p", { class: "notice", role: "alert" });
  const title = h("h2", { id: `${id}-title`, tabindex: "-1" }, room.seat.topic ?? "Group room");
  const members = new Set<string>();

  const pendingList = h("ul", { class: "plain", "aria-label": "Messages waiting for a decision" });
  const pendingEmpty = h("p", { class: "hint" }, "No messages are waiting.");
  const memberList = h("ul", { class: "plain", "aria-label": "Members" });
  const alerts = h("ul", { class: "plain", "aria-label": "Crisis flags" }, h("li", { class: "hint" }, "None."));
  const log = ChatLog.create("Room messages");
  const logList = log.region;

  const lockButton = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Lock room");
  const closeButton = h("button", { type: "button", class: "danger" }, "Close room for everyone");
  const announceBox = h("input", { type: "text", id: `${id}-announce`, maxlength: "2000" });
  const announceButton = h("button", { type: "submit" }, "Announce");
  const announceForm = h("form", { autocomplete: "off" },
    h("label", { for: `${id}-announce` }, "Announcement to the room"),
    h("div", { class: "row" }, announceBox, announceButton));
  const invite = h("input", { type: "text", id: `${id}-invite`, readonly: "" });
  invite.value = roomLink(new URL("group.html", location.href).href, room.code);

  const section = h("section", { class: "card", "aria-labelledby": `${id}-title`, "data-room": room.code },
    title,
    h("p", { class: "hint" }, `You moderate as ${room.alias}.${room.seat.premoderated === true ? " Messages wait for a decision." : ""}`),
    local,
    h("h3", {}, "Waiting for a decision"), pendingEmpty, pendingList,
    h("h3", {}, "Crisis flags"), alerts,
    h("h3", {}, "Members"), memberList,
    h("h3", {}, "Room"), logList,
    announceForm,
    h("div", { class: "row" }, lockButton, closeButton),
    h("label", { for: `${id}-invite` }, "Invite link"), invite,
  );
  $("panels").prepend(section);
  panels.set(room.code, section);
  title.focus();

  const renderMembers = () => {
    memberList.replaceChildren();
    if (members.size === 0) memberList.append(h("li", { class: "hint" }, "Nobody else yet."));
    for (const alias of [...members].sort()) {
      const mute = h("button", { type: "button", class: "secondary", "aria-label": `Mute ${alias}` }, "Mute");
      const unmute = h("button", { type: "button", class: "secondary", "aria-label": `Unmute ${alias}` }, "Unmute");
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${alias}` }, "Remove");
      mute.addEventListener("click", () => void act(mute, local, () => room.mute(alias, true)));
      unmute.addEventListener("click", () => void act(unmute, local, () => room.mute(alias, false)));
      remove.addEventListener("click", () => void act(remove, local, () => room.remove(alias)));
      memberList.append(h("li", {}, h("strong", {}, alias), " ", mute, " ", unmute, " ", remove));
    }
  };
  renderMembers();

  const showPending = (item: PendingItem) => {
    members.add(item.alias);
    renderMembers();
    pendingEmpty.hidden = true;
    const edit = h("textarea", { id: `${id}-edit-${item.item}`, maxlength: "4000" });
    edit.value = bodyText(item.body);
    const reason = h("input", { type: "text", id: `${id}-reason-${item.item}`, maxlength: "500", placeholder: "optional" });
    const approve = h("button", { type: "button" }, "Approve");
    const save = h("button", { type: "button", class: "secondary" }, "Deliver edited");
    const deny = h("button", { type: "button", class: "danger" }, "Deny");
    const entry = h("li", { "data-item": String(item.item) },
      h("p", {}, h("strong", {}, item.alias), ": ", h("span", { class: "text" }, bodyText(item.body))),
      h("label", { for: `${id}-edit-${item.item}` }, "Edit before delivering"), edit,
      h("label", { for: `${id}-reason-${item.item}` }, "Reason if denied (only the author sees it)"), reason,
      h("div", { class: "row" }, approve, save, deny));
    const done = (what: string) => {
      entry.remove();
      pendingEmpty.hidden = pendingList.children.length > 0;
      log.system(`${what} a message from ${item.alias}.`);
    };
    const gone = (error: unknown) => {
      if (error instanceof HavenError && error.code === ErrorCode.ITEM_NOT_FOUND) done("Someone else handled");
      else notify(local, describe(error), "error");
    };
    approve.addEventListener("click", () => void room.approve(item.item).then(() => done("You approved"), gone));
    save.addEventListener("click", () => void room.edit(item.item, edit.value).then(() => done("You edited and delivered"), gone));
    deny.addEventListener("click", () => void room.deny(item.item, reason.value.trim() || undefined).then(() => done("You denied"), gone));
    pendingList.append(entry);
  };

  room.on("event", (event) => {
    switch (event.t) {
      case "pending":
        showPending(event.item);
        break;
      case "deliver":
        members.add(event.sender);
        renderMembers();
        log.message(event.sender, bodyText(event.body), { edited: event.edited === true });
        break;
      case "presence":
        if (event.event === "joined" || event.event === "back") members.add(event.alias);
        if (event.event === "left" || event.event === "removed") members.delete(event.alias);
        renderMembers();
        log.system(presenceText(event.alias, event.event));
        break;
      case "moderation":
        log.system(`${event.action}${event.alias ? ` ${event.alias}` : ""}`);
        if (event.action === "locked" || event.action === "unlocked") {
          const locked = event.action === "locked";
          lockButton.setAttribute("aria-pressed", String(locked));
          lockButton.textContent = locked ? "Unlock room" : "Lock room";
        }
        break;
      case "announcement":
        log.system(`Announcement: ${bodyText(event.body)}`);
        break;
      case "crisis_alert": {
        const alias = event.alias;
        const escalate = h("button", { type: "button", class: "danger" }, `Move ${alias} to the ${CRISIS_QUEUE} priority lane`);
        escalate.addEventListener("click", () => void act(escalate, local, async () => {
          await room.escalate(alias, CRISIS_QUEUE);
          escalate.replaceWith(h("span", {}, "Moved: a helpline worker takes them first."));
        }));
        alerts.querySelector("li.hint")?.remove();
        alerts.append(h("li", { class: "flag" }, `${alias} raised a crisis flag. `, escalate));
        log.system(`${alias} raised a crisis flag.`, "alert");
        break;
      }
      case "room_closed":
        log.system(closedText(event.reason), "alert");
        break;
      default:
        break;
    }
  });
  room.on("end", (error) => {
    if (error !== null) log.system(describe(error), "alert");
    panels.delete(room.code);
    for (const control of section.querySelectorAll("button")) control.disabled = true;
  });

  announceForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = announceBox.value.trim();
    if (text === "") return;
    void act(announceButton, local, async () => {
      await room.announce(text);
      announceBox.value = "";
      log.system(`You announced: ${text}`);
    });
  });
  lockButton.addEventListener("click", () => void act(lockButton, local, () =>
    room.lock(lockButton.getAttribute("aria-pressed") !== "true")));
  closeButton.addEventListener("click", () => void act(closeButton, local, () => room.close()));
  void room.pendingList().then((list) => list.items.forEach(showPending), (error) => notify(local, describe(error), "error"));
}

async function main(): Promise<void> {
  quickExitFor(() => config, () => haven);
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void act($("signin-button"), notice, async () => {
      if (haven === null) return;
      notify(notice, "");
      const token = $<HTMLInputElement>("token");
      const authed = await haven.auth(token.value);
      token.value = "";
      if (authed.role !== "moderator") throw new HavenError(ErrorCode.FORBIDDEN, "not a moderator token");
      const until = new Date(authed.expires * 1000);
      $("whoami").textContent = `Signed in as a moderator until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`;
      show($("signin"), false);
      show($("rooms-card"), true);
      await loadDirectory();
      $("refresh").focus();
    });
  });
  $("refresh").addEventListener("click", () => void act($("refresh"), notice, loadDirectory));
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void act($("create-button"), notice, async () => {
      if (haven === null) return;
      const topic = $<HTMLInputElement>("new-topic").value.trim();
      const rules = $<HTMLTextAreaElement>("new-rules").value.trim();
      panel(await haven.createRoom({
        kind: "group", topic: topic || undefined, rules: rules || undefined,
        premoderated: $<HTMLInputElement>("new-premod").checked, listed: $<HTMLInputElement>("new-listed").checked,
      }));
      await loadDirectory();
    });
  });
  try {
    config = await loadConfig();
    haven = await connectRelay(config, $("status"));
    $<HTMLButtonElement>("signin-button").disabled = false;
  } catch (error) {
    notify(notice, `Cannot reach the service right now. ${describe(error)}`, "error");
  }
}

void main();

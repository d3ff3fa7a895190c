"""The helpline's pages in Debian's Chromium against a real demo relay, end to end.

Each test is a whole conversation as people would have it: a visitor and staff (whose
visitor goes offline for five seconds and comes back with nothing lost or doubled), a
spoken-code handoff to a responder, a pre-moderated group with a moderator editing and
denying, and a Python SDK client with a browser in one room joined by link. Every page
is audited as it is used: no storage writes of any kind, no request to any origin but
the page's and the relay's, nothing in a query string. Screenshots of every page go to
tests/web/artifacts/ (the best ones are copied into docs/images/ by hand).

"Offline" is a real drop: the browser context is set offline and its WebSockets are cut
(Chromium's offline emulation alone leaves open WebSockets up), and reconnects are
refused until it comes back online.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from .axe import assert_accessible
from .browser import ARTIFACTS, DemoRelay, browser, build_pages, demo_relay
from .pypeer import PyPeer
from .test_quick_exit import neutral_site

WAIT = 60_000  #: ms; a hang guard for Playwright waits, never a performance assertion
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1100, "height": 1100}

#: Runs before any page script: records every attempt to write browser storage.
STORAGE_SPY = """
(() => {
  const writes = [];
  Object.defineProperty(window, "__storageWrites", { value: writes });
  const wrap = (proto, name, label) => {
    const original = proto && proto[name];
    if (typeof original !== "function") return;
    proto[name] = function (...args) { writes.push(label); return original.apply(this, args); };
  };
  wrap(Storage.prototype, "setItem", "Storage.setItem");
  wrap(IDBFactory.prototype, "open", "indexedDB.open");
  if (typeof CacheStorage !== "undefined") wrap(CacheStorage.prototype, "open", "caches.open");
  const cookie = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  Object.defineProperty(Document.prototype, "cookie", {
    configurable: true,
    get() { return cookie.get.call(this); },
    set(value) { writes.push("document.cookie"); cookie.set.call(this, value); },
  });
})();
"""

STORAGE_NOW = """async () => ({
  local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
  idb: (await indexedDB.databases()).length, caches: (await caches.keys()).length,
  writes: [...window.__storageWrites],
})"""


@pytest.fixture(scope="module")
def neutral() -> Iterator[str]:
    with neutral_site() as url:
        yield url


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, neutral: str) -> Iterator[DemoRelay]:
    pages = build_pages(tmp_path_factory.mktemp("pages"))
    with demo_relay(pages, neutral) as running:
        yield running


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    with browser() as running:
        yield running


class Audit:
    """Every request a context makes, and (per page) every storage write attempt."""

    def __init__(self, relay: DemoRelay) -> None:
        self.allowed = {origin(relay.pages_url), origin(relay.url)}
        self.urls: list[str] = []
        self.pages: list[Any] = []

    def attach(self, context: Any) -> None:
        context.add_init_script(STORAGE_SPY)
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("page", self.watch_page)

    def watch_page(self, page: Any) -> None:
        self.pages.append(page)
        page.on("websocket", lambda ws: self.urls.append(ws.url))

    def check(self) -> None:
        assert self.urls, "nothing was recorded"
        for url in self.urls:
            if url.startswith(("data:", "about:")):
                continue
            assert origin(url) in self.allowed, f"request to a foreign origin: {url}"
            assert urlsplit(url).query == "", f"a query string was sent: {url}"
        for page in self.pages:
            if page.is_closed():
                continue
            state = page.evaluate(STORAGE_NOW)
            assert state == {"local": 0, "session": 0, "cookie": "", "idb": 0, "caches": 0,
                             "writes": []}, (page.url, state)  # fmt: skip


def origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


class Network:
    """Take a browser context offline for real, and bring it back."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.offline = False
        self.live: list[tuple[Any, Any]] = []
        context.route_web_socket(re.compile(r"^ws://"), self._route)

    def _route(self, ws: Any) -> None:
        if self.offline:
            ws.close(code=1011, reason="offline")
            return
        self.live.append((ws, ws.connect_to_server()))

    def down(self) -> None:
        self.offline = True
        self.context.set_offline(True)
        for page_side, server_side in self.live:
            server_side.close()
            page_side.close(code=1011, reason="network lost")
        self.live.clear()

    def up(self) -> None:
        self.offline = False
        self.context.set_offline(False)


def shot(page: Any, name: str, full: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


def open_page(context: Any, relay: DemoRelay, name: str) -> Any:
    page = context.new_page()
    page.goto(f"{relay.pages_url}/{name}.html")
    page.locator("#status[data-state='connected']").wait_for(state="attached", timeout=WAIT)
    return page


def messages(page: Any, log: str = "#log") -> list[str]:
    return [t.strip() for t in page.locator(f"{log} li.msg .text").all_inner_texts()]


def send(page: Any, box: str, text: str) -> None:
    page.locator(box).fill(text)
    page.locator(box).press("Enter")


def sign_in(page: Any, token: str, panel: str) -> None:
    page.locator("#token").fill(token)
    page.locator("#signin-button").click()
    page.locator(panel).wait_for(state="visible", timeout=WAIT)


def no_sideways_scroll(page: Any) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px on a phone"


# --------------------------------------------------------------------- the scenarios


def test_visitor_and_staff_chat_survives_five_seconds_offline(
    relay: DemoRelay, chrome: Any
) -> None:
    audit = Audit(relay)
    staff_ctx = chrome.new_context(viewport=DESK)
    visitor_ctx = chrome.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    for ctx in (staff_ctx, visitor_ctx):
        audit.attach(ctx)
    network = Network(visitor_ctx)
    try:
        staff = open_page(staff_ctx, relay, "staff")
        sign_in(staff, relay.tokens["staff"], "#queue-panel")
        staff.locator("#duty").click()
        staff.locator("#duty[aria-pressed='true']").wait_for(timeout=WAIT)

        visitor = open_page(visitor_ctx, relay, "visitor")
        assert_accessible(visitor, "visitor start")
        shot(visitor, "visitor-start")
        visitor.get_by_role("button", name="Talk to someone now").click()
        visitor.locator("#waiting").wait_for(state="visible", timeout=WAIT)
        assert visitor.locator("#position").inner_text() == "1"
        assert_accessible(visitor, "visitor waiting")
        shot(visitor, "visitor-waiting")
        no_sideways_scroll(visitor)

        staff.locator("#waiting:text-is('1')").wait_for(timeout=WAIT)  # counts refresh
        staff.get_by_role("button", name="Take next visitor").click()
        visitor.locator("#chat").wait_for(state="visible", timeout=WAIT)
        box = "#chats textarea"
        send(staff, box, "Hello, I'm here. Take your time.")
        visitor.locator("#log li.msg").first.wait_for(timeout=WAIT)
        send(visitor, "#message", "hi. I don't know where to start")
        staff.locator("#chats li.msg:not(.mine)").first.wait_for(timeout=WAIT)
        # Acknowledged before the drop (else its outcome would be unknown, by design).
        visitor.locator("#log li.msg.mine .note").wait_for(state="detached", timeout=WAIT)

        network.down()
        visitor.locator("#status[data-state='reconnecting']").wait_for(
            state="attached", timeout=WAIT
        )
        shot(visitor, "visitor-reconnecting")
        away = ["That's all right.", "There is no wrong place to start.", "I'm still here."]
        for text in away:
            send(staff, box, text)
        staff.locator("#chats li.mine .note").first.wait_for(state="detached", timeout=WAIT)
        send(visitor, "#message", "sorry, my connection dropped")  # written while offline
        time.sleep(5)  # the scenario: five seconds offline (not a performance check)
        network.up()
        visitor.locator("#status[data-state='resumed']").wait_for(state="attached", timeout=WAIT)
        visitor.locator("#log li.msg.mine .note").wait_for(state="detached", timeout=WAIT)
        send(staff, box, "Welcome back.")
        visitor.locator("#log li.msg:not(.mine) .text:text-is('Welcome back.')").wait_for(
            timeout=WAIT
        )
        staff.locator(
            "#chats li.msg:not(.mine) .text:text-is('sorry, my connection dropped')"
        ).wait_for(timeout=WAIT)
        theirs = [m for m in messages(visitor) if m not in (
            "hi. I don't know where to start", "sorry, my connection dropped")]  # fmt: skip
        assert theirs == ["Hello, I'm here. Take your time.", *away, "Welcome back."]
        mine_at_staff = messages(staff, "#chats")
        assert mine_at_staff.count("sorry, my connection dropped") == 1
        assert mine_at_staff.count("hi. I don't know where to start") == 1
        assert_accessible(visitor, "visitor chat")
        assert_accessible(staff, "staff console with a chat")
        shot(visitor, "visitor-chat")
        no_sideways_scroll(visitor)
        shot(staff, "staff-console")

        visitor.get_by_role("button", name="End the conversation").click()
        visitor.locator("#ended").wait_for(state="visible", timeout=WAIT)
        staff.locator("#chats li.system:has-text('left')").wait_for(timeout=WAIT)
        audit.check()
    finally:
        staff_ctx.close()
        visitor_ctx.close()


def test_staff_hands_off_to_a_responder_with_a_spoken_code(relay: DemoRelay, chrome: Any) -> None:
    audit = Audit(relay)
    staff_ctx, responder_ctx = chrome.new_context(viewport=DESK), chrome.new_context(viewport=PHONE)
    for ctx in (staff_ctx, responder_ctx):
        audit.attach(ctx)
    try:
        with PyPeer(relay.url, relay.key) as visitor:
            assert visitor.conn is not None
            ticket = visitor.run(visitor.conn.request_help, "helpline")
            staff = open_page(staff_ctx, relay, "staff")
            sign_in(staff, relay.tokens["staff"], "#queue-panel")
            staff.get_by_role("button", name="Take next visitor").click()
            visitor_room = visitor.run(ticket.room)
            visitor.watch(visitor_room)
            staff.get_by_role("button", name=re.compile("bring in a responder")).click()
            big = staff.locator("#chats p.big", has_text=re.compile(r"^\d"))
            big.wait_for(timeout=WAIT)
            code_text = big.inner_text()
            assert re.fullmatch(r"\d{1,2}-[a-z]+-[a-z]+-[a-z]+", code_text), code_text
            shot(staff, "staff-handoff-code")

            responder = open_page(responder_ctx, relay, "responder")
            assert_accessible(responder, "responder")
            number, words = code_text.split("-", 1)
            wrong = f"{int(number) % 99 + 1} {words.replace('-', ' ')}"
            responder.locator("#token").fill(relay.tokens["responder"])
            responder.locator("#code").fill(wrong)
            responder.get_by_role("button", name="Join").click()
            notice = responder.locator("#notice[data-kind='error']")
            notice.wait_for(timeout=WAIT)
            assert "not valid" in notice.inner_text()
            assert responder.locator("#chat").is_hidden()
            shot(responder, "responder-wrong-code")

            responder.locator("#code").fill(code_text.upper().replace("-", " "))  # as spoken
            responder.get_by_role("button", name="Join").click()
            responder.locator("#chat").wait_for(state="visible", timeout=WAIT)
            send(staff, "#chats textarea", "I've asked a colleague to join us.")
            responder.locator('#log .text:text-is("I\'ve asked a colleague to join us.")').wait_for(
                timeout=WAIT
            )
            send(responder, "#message", "Hello, I'm a crisis responder.")
            event = visitor.wait_for(
                visitor_room.code,
                lambda e: getattr(e, "body", b"") == b"Hello, I'm a crisis responder.",
            )
            assert event.sender != visitor_room.alias
            shot(responder, "responder-chat")
            audit.check()
    finally:
        staff_ctx.close()
        responder_ctx.close()


def test_premoderated_group_message_is_edited_and_a_denied_one_never_arrives(
    relay: DemoRelay, chrome: Any
) -> None:
    audit = Audit(relay)
    mod_ctx = chrome.new_context(viewport=DESK)
    member_ctx = chrome.new_context(viewport=PHONE, is_mobile=True)
    for ctx in (mod_ctx, member_ctx):
        audit.attach(ctx)
    try:
        moderator = open_page(mod_ctx, relay, "moderator")
        assert_accessible(moderator, "moderator sign-in")
        sign_in(moderator, relay.tokens["moderator"], "#rooms-card")
        directory = moderator.locator("#directory")
        directory.locator("li:has-text('Morning check-in')").wait_for(timeout=WAIT)
        assert "opens in" in directory.locator("li:has-text('Morning check-in')").inner_text()
        assert "open now" in directory.locator("li:has-text('Evening survivors')").inner_text()
        moderator.get_by_role("button", name=re.compile("^Moderate Evening")).click()
        moderator.locator("#panels section").wait_for(timeout=WAIT)
        shot(moderator, "moderator-rooms")

        with PyPeer(relay.url, relay.key) as peer:
            assert peer.conn is not None
            listing = peer.run(peer.conn.directory)
            code = next(r.room for r in listing if r.open and r.premoderated)
            peer_room = peer.run(peer.conn.join, code)
            peer.watch(peer_room)

            member = open_page(member_ctx, relay, "group")
            member.get_by_role("button", name=re.compile("^Join Evening")).click()
            member.locator("#rules-card").wait_for(state="visible", timeout=WAIT)
            assert "moderator reads messages" in member.locator("#rules").inner_text()
            assert member.locator("#message").is_hidden()  # rules before the first message
            alias = member.locator("#alias-intro").inner_text()
            assert re.fullmatch(r"[a-z]+-[a-z]+-\d+", alias), alias
            assert_accessible(member, "group rules")
            shot(member, "group-rules")
            member.get_by_role("button", name="I have read the ground rules").click()
            assert member.locator("#alias").inner_text() == alias

            send(member, "#message", "I'm Sam from Elm Street and this happened to me too")
            member.locator("#log li.mine .note:text-is('waiting for a moderator')").wait_for(
                timeout=WAIT
            )
            item = moderator.locator("#panels li[data-item]").first
            item.wait_for(timeout=WAIT)
            assert "Sam from Elm Street" in item.inner_text()
            assert_accessible(moderator, "moderator with a pending message")
            shot(moderator, "moderator-pending")
            item.locator("textarea").fill("[details removed] this happened to me too")
            item.get_by_role("button", name="Deliver edited").click()
            edited = peer.wait_for(code, lambda e: getattr(e, "sender", None) == alias)
            assert edited.body == b"[details removed] this happened to me too"
            assert edited.edited is True

            send(member, "#message", "you all deserved it")
            item = moderator.locator("#panels li[data-item]").first
            item.wait_for(timeout=WAIT)
            item.locator("input[type='text']").fill("Please be kind to each other.")
            item.get_by_role("button", name="Deny").click()
            denied = "not posted by a moderator: Please be kind to each other."
            member.locator(f"#log li.mine .note:text-is('{denied}')").wait_for(timeout=WAIT)

            send(member, "#message", "thank you for listening")
            item = moderator.locator("#panels li[data-item]").first
            item.wait_for(timeout=WAIT)
            item.get_by_role("button", name="Approve").click()
            peer.wait_for(code, lambda e: getattr(e, "body", None) == b"thank you for listening")
            from_member = [e.body for e in peer.events[code] if getattr(e, "sender", None) == alias]
            assert from_member == [b"[details removed] this happened to me too",
                                   b"thank you for listening"]  # fmt: skip

            # A crisis flag reaches the moderator, who moves the member to the helpline.
            member.get_by_role("button", name="I need help now").click()
            flag = moderator.locator("#panels li.flag").first
            flag.wait_for(timeout=WAIT)
            assert alias in flag.inner_text()
            flag.get_by_role("button").click()
            member.locator("#help").wait_for(state="visible", timeout=WAIT)
            assert "number 1 in line" in member.locator("#help-line").inner_text()
            assert_accessible(member, "group chat")
            shot(member, "group-chat")
            shot(moderator, "moderator-console")
            audit.check()
    finally:
        mod_ctx.close()
        member_ctx.close()


def test_python_client_and_browser_share_a_room_joined_by_link(
    relay: DemoRelay, chrome: Any
) -> None:
    audit = Audit(relay)
    ctx = chrome.new_context()
    audit.attach(ctx)
    try:
        with PyPeer(relay.url, relay.key) as peer:
            assert peer.conn is not None
            room = peer.run(peer.conn.create_room)
            peer.watch(room)
            page = ctx.new_page()
            page.goto(f"{relay.pages_url}/group.html#room={room.code}")
            page.locator("#rules-card").wait_for(state="visible", timeout=WAIT)
            assert "#" not in page.url
            assert room.code not in page.url
            assert page.evaluate("() => location.hash") == ""
            page.get_by_role("button", name="I have read the ground rules").click()
            joined = peer.wait_for(room.code, lambda e: getattr(e, "event", None) == "joined")
            assert page.locator("#alias").inner_text() == joined.alias
            peer.run(room.send, b"hello from Python")
            page.locator("#log .text:text-is('hello from Python')").wait_for(timeout=WAIT)
            send(page, "#message", "hello from the browser ✓")
            event = peer.wait_for(room.code, lambda e: getattr(e, "sender", None) == joined.alias)
            assert event.body == "hello from the browser ✓".encode()
            for url in audit.urls:
                assert room.code not in url  # the code never left the page
            audit.check()
    finally:
        ctx.close()


def test_quick_exit_from_a_conversation_leaves_nothing(
    relay: DemoRelay, chrome: Any, neutral: str
) -> None:
    ctx = chrome.new_context()
    audit = Audit(relay)
    audit.attach(ctx)
    try:
        page = open_page(ctx, relay, "visitor")
        page.get_by_role("button", name="Talk to someone now").click()
        page.locator("#waiting").wait_for(state="visible", timeout=WAIT)
        with page.expect_navigation(url=neutral, timeout=WAIT):
            page.keyboard.press("Escape")
            page.keyboard.press("Escape")
        page.go_back(timeout=WAIT)
        assert not page.url.startswith(relay.pages_url), page.url
        assert ctx.cookies() == []
        assert ctx.storage_state()["origins"] == []
    finally:
        ctx.close()


@pytest.mark.parametrize("name", ["index", "visitor", "group", "staff", "responder", "moderator"])
def test_every_page_is_accessible_keyboard_usable_and_fits_a_phone(
    relay: DemoRelay, chrome: Any, name: str
) -> None:
    ctx = chrome.new_context(viewport=PHONE, is_mobile=True)
    audit = Audit(relay)
    audit.attach(ctx)
    try:
        page = ctx.new_page()
        page.goto(f"{relay.pages_url}/{name}.html")
        if name != "index":
            page.locator("#status[data-state='connected']").wait_for(state="attached", timeout=WAIT)
        assert_accessible(page, name)
        no_sideways_scroll(page)
        # Keyboard only: Tab reaches Quick Exit and every enabled control.
        reached: set[str] = set()
        for _ in range(30):
            page.keyboard.press("Tab")
            reached.add(
                page.evaluate("() => document.activeElement?.id || document.activeElement?.tagName")
            )
        assert "quick-exit" in reached
        shot(page, f"page-{name}-phone")
        audit.check()
    finally:
        ctx.close()


def test_visitor_flow_by_keyboard_alone(relay: DemoRelay, chrome: Any) -> None:
    ctx = chrome.new_context()
    try:
        with PyPeer(relay.url, relay.key) as staff:
            assert staff.conn is not None
            staff.run(staff.conn.auth, relay.tokens["staff"])
            page = open_page(ctx, relay, "visitor")
            for _ in range(10):
                page.keyboard.press("Tab")
                if page.evaluate("() => document.activeElement.id") == "ask":
                    break
            page.keyboard.press("Enter")
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT)
            assert page.evaluate("() => document.activeElement.id") == "cancel"
            room = staff.run(staff.conn.take_next, "helpline")
            staff.watch(room)
            page.locator("#chat").wait_for(state="visible", timeout=WAIT)
            assert page.evaluate("() => document.activeElement.id") == "message"
            page.keyboard.type("typed without a mouse")
            page.keyboard.press("Enter")
            event = staff.wait_for(room.code, lambda e: getattr(e, "body", None) is not None)
            assert event.body == b"typed without a mouse"
    finally:
        ctx.close()


def test_visitor_solves_proof_of_work_in_a_web_worker(
    tmp_path_factory: pytest.TempPathFactory, chrome: Any
) -> None:
    """A relay under pressure asks 14 bits for `request_help`: the visitor page solves it
    off the main thread in pow-worker.js (same origin, allowed by worker-src) and waits in
    line as usual."""
    pages = build_pages(tmp_path_factory.mktemp("pow-pages"))
    pressure = ["--pow-start-load", "0.0001", "--max-connections", "100",
                "--pow-min-difficulty", "14", "--pow-max-difficulty", "14"]  # fmt: skip
    with demo_relay(pages, extra=pressure) as relay, PyPeer(relay.url, relay.key) as peer:
        assert peer.conn is not None
        conn = peer.conn
        deadline = time.monotonic() + 60
        while conn.challenge.difficulty != 14:  # the admission controller reacts within ~1 s
            assert time.monotonic() < deadline, "the relay never asked for proof of work"
            time.sleep(0.1)
        ctx = chrome.new_context()
        audit = Audit(relay)
        audit.attach(ctx)
        try:
            page = open_page(ctx, relay, "visitor")
            with page.expect_worker(timeout=WAIT) as worker:
                page.get_by_role("button", name="Talk to someone now").click()
            assert worker.value.url.endswith("/pow-worker.js")
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT)
            assert page.locator("#position").inner_text() == "1"
            audit.check()
        finally:
            ctx.close()

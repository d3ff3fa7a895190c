"""One client connection: WebSocket (``protocol.websocket``, sans-IO, on a Trio stream),
Noise, its task (the handshake, then the connection's lifetime) and a writer task only
while one is needed.

Why not trio-websocket on the relay side: trio-websocket
routes every received message through a memory channel and takes a lock plus a
``send_all`` for every sent frame. Fanning a room message out to nine peers that way
costs nine awaits. Here a room message becomes nine frames appended synchronously to
nine outbound buffers, and each connection writes whatever has accumulated at once
(see docs/benchmarks.md for the measured effect).

Shape per connection:

* the relay's read loop (``relay/poller.py``) reads every ready socket once per batch
  and hands the bytes to ``on_readable``, which drives the handshake (the upgrade
  request, Noise message 1) and then the session's frames synchronously; the relay
  flushes the batch's deliveries once. The connection's task stays parked as the owner
  of its lifetime: the handshake deadline, the close deadline, the end. A stream
  without a descriptor is read by its own task instead (``_read_here``);
* after a flush each touched connection writes its buffer straight to the socket
  (``kick``) when nothing is in flight; what the kernel does not take is left to a
  writer task, started in the relay's handler nursery only then, which ``send_all``s
  and exits once the buffer is empty (it also finishes the close);
* the outbound buffer is bounded in bytes: a peer that would exceed it is a slow
  consumer and is dropped with close code 4406, never slowing its rooms.

Client addresses are never read: the stream's socket is not asked for its peer name,
and no request header is looked at beyond what the WebSocket upgrade needs.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from typing import TYPE_CHECKING

import trio

from haven.protocol import frames
from haven.protocol.errors import DecodeError, ErrorCode, ProtocolError
from haven.protocol.session import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_UNSUPPORTED_DATA,
    Refusal,
    RelaySession,
    TimedOut,
    close_code,
)
from haven.protocol.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    FramingError,
    Upgrade,
    UpgradeError,
    accept_response,
    close_frame,
    frame,
    head_complete,
    parse_close,
    parse_upgrade,
    reject_response,
)

if TYPE_CHECKING:
    from haven.cluster.forwarding import Remote

    from .peer import Peer
    from .server import Relay

log = logging.getLogger("haven.connection")

RECEIVE_SIZE = 65536

def _frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final, binary frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x82, length))
    if length < 65536:
        return b"\x82\x7e" + length.to_bytes(2, "big")
    return b"\x82\x7f" + length.to_bytes(8, "big")


#: Outbound transport frames have one of five sizes, so their WebSocket headers are
#: constants, looked up rather than built per frame.
_FRAME_HEADERS: dict[int, bytes] = {size: _frame_header(size) for size in frames.WIRE_SIZES}


#: ``ClientSocket.fd`` once the socket is closed: nothing may be written to the number,
#: which the kernel may already have given to a new connection.
CLOSED = -2

#: Most WebSocket frames one message may arrive in (browsers and the SDKs send one).
MAX_FRAGMENTS = 64


class ClientSocket:
    """The relay's end of one client's WebSocket: a thin Trio shell over ``RelaySession``.

    Reader loop, writer task, bounded outbound buffer; the session owns the handshake,
    the frames' crypto and the idle/keepalive policy.
    """

    __slots__ = (
        "_flushed", "_head", "_scope", "accepted", "backlog", "buf", "bus", "close_sent",
        "closing", "dirty", "failure", "fd", "frames", "peer", "pow_seed", "reader", "relay",
        "sending", "session", "stream", "upgraded", "writing",
    )  # fmt: skip

    proxy = False  #: a real socket (a cluster's proxy sink says True: ``Relay.flush``)

    def __init__(self, relay: Relay, stream: trio.abc.Stream) -> None:
        self.relay = relay
        self.stream = stream
        #: Client frames in (created when the upgrade request has been read).
        self.reader: FrameReader | None = None
        #: The 101 response went out: WebSocket frames may be sent from now on.
        self.upgraded = False
        #: A close frame went out: nothing may follow it.
        self.close_sent = False
        #: The upgrade request's bytes so far (until it is complete).
        self._head = b""
        #: Why the handshake failed (a metrics label), once it has.
        self.failure: str | None = None
        #: When the socket was accepted (the handshake's deadline counts from here).
        self.accepted = 0.0
        #: Created once the WebSocket upgrade is accepted (the Noise handshake's state).
        self.session: RelaySession | None = None
        self.peer: Peer | None = None
        self.buf: list[bytes] = []
        self.frames = 0  #: messages in ``buf`` (the latency histogram counts each)
        self.backlog = 0
        self.closing = False
        #: The reader's scope while it runs (the writer cancels it to end the connection).
        self._scope: trio.CancelScope | None = None
        #: Set by the writer as it exits, when the ending connection waits for it.
        self._flushed: trio.Event | None = None
        #: A writer task is running (it exits when idle: see ``_wake_writer``).
        self.writing = False
        self.pow_seed = secrets.token_bytes(32)
        self.dirty = False  #: queued bytes await this flush's ``kick``
        self.sending = False  #: the writer task is inside ``send_all``
        sock = getattr(stream, "socket", None)
        #: The socket's descriptor for synchronous writes (-1: always use the writer task).
        self.fd: int = sock.fileno() if sock is not None else -1
        #: Its requests away to other processes of a cluster (``cluster.link``).
        self.bus: Remote | None = None

    # --------------------------------------------------------------------- run

    async def run(self) -> None:
        """Serve the connection until it closes; never raises for client misbehaviour.

        The connection's bytes are read by the relay's read loop (``relay/poller.py``),
        which drives the handshake and then the session synchronously (``_take``);
        this task owns the connection's lifetime: the handshake deadline (this scope's,
        until the handshake completes), the close deadline, the end. A stream without
        a descriptor is read here instead (``_read_here``).
        """
        relay = self.relay
        self.accepted = trio.current_time()
        try:
            # No nursery per connection: a writer task, when one is needed, runs in the
            # relay's handler nursery and cancels this scope once it has flushed the
            # close (``_writer``).
            deadline = self.accepted + relay.config.handshake_timeout
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                relay.pending[self] = None
                poller = relay.poller
                if poller is not None and self.fd >= 0:
                    poller.add(self)
                    try:
                        await trio.sleep_forever()
                    finally:
                        poller.remove(self)
                else:
                    await self._read_here()
            if self.peer is None:
                # Refused, evicted or gone (``failure`` says), closed by the relay
                # (draining, or a write that failed), or out of time.
                reason = self.failure or (
                    ("draining" if relay.draining else "eof") if self.closing else "timeout"
                )
                relay.metrics.handshake_failed(reason)
                log.debug("handshake failed: %s", reason)
                self._end()
            else:
                self.close(None, "")  # (no-op when already closing)
            if self.writing:
                # Let the writer flush what is queued, the close frame last, until the
                # close deadline ``close`` set.
                self._flushed = trio.Event()
                with trio.move_on_at(scope.deadline):
                    await self._flushed.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away (reset, closed); nothing to report
        finally:
            self.closing = True
            self._scope = None
            relay.pending.pop(self, None)
            if self.peer is not None:
                relay.hub.disconnect(self.peer, trio.current_time())
                relay.flush()
            relay.connection_closed(self)
            # The socket is closed by the caller (``Relay.handle_stream``) right after.

    async def _read_here(self) -> None:
        """Read and handle until the end, one read and one flush at a time (a stream
        the read loop cannot watch: no descriptor)."""
        relay = self.relay
        while not self.closing:
            data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            received = trio.current_time()
            if not data:
                self._eof()
                return
            self._take(data, received)
            relay.flush(received)

    # --------------------------------------------------------------- handshake

    def _handshake_bytes(self, data: bytes, now: float) -> None:
        """Advance the handshake: the upgrade request, then Noise message 1."""
        if self.reader is None:
            self._head += data
            try:
                if not head_complete(self._head):
                    return
                upgrade = parse_upgrade(self._head)
            except UpgradeError as exc:
                self._push_bytes(reject_response(exc))
                self._give_up("websocket")
                return
            self._head = b""
            self.reader = FrameReader(self.relay.config.max_message_bytes, MAX_FRAGMENTS)
            if not self._accept(upgrade):
                return
            data = upgrade.rest
        try:
            events = self.reader.receive(data)
        except FramingError as exc:
            self._give_up("websocket", exc.code, exc.reason)
            return
        for i, (opcode, payload) in enumerate(events):
            if opcode == BINARY:
                self._noise(payload, events[i + 1 :], now)
                return
            if opcode == PING:
                self._push_bytes(frame(PONG, payload))
            elif opcode != PONG:
                code = CLOSE_UNSUPPORTED_DATA if opcode == TEXT else CLOSE_NORMAL
                self._give_up("websocket", code, "binary only")
                return

    def _accept(self, upgrade: Upgrade) -> bool:
        """Answer the upgrade (101), then refuse if the relay is draining or full."""
        relay = self.relay
        # Only the subprotocol list is read from the upgrade request: never addresses
        # or forwarding headers.
        try:
            subprotocol = RelaySession.check_subprotocols(upgrade.subprotocols)
        except Refusal as refusal:
            # Accept without a subprotocol, then close with the typed code: a client
            # learns why (a plain HTTP refusal would not tell it).
            self._push_bytes(accept_response(upgrade.key, None))
            self.upgraded = True
            self._give_up(refusal.why, refusal.close_code, refusal.reason)
            return False
        self._push_bytes(accept_response(upgrade.key, subprotocol))
        self.upgraded = True
        if relay.draining:
            self._give_up("draining", CLOSE_GOING_AWAY, "relay draining")
            return False
        # Before any Diffie-Hellman work: a flood of handshakes is refused cheaply.
        if relay.at_capacity():
            self._give_up("capacity", close_code(ErrorCode.SERVER_FULL), "relay full, retry later")
            return False
        return True

    def _noise(self, msg1: bytes, early: list[tuple[int, bytes]], now: float) -> None:
        """Noise NK message 1 in, message 2 out; then the session is open."""
        relay = self.relay
        config = relay.config
        session = RelaySession(
            relay.static_key,
            prologue=relay.prologue,
            now=now,
            idle_timeout=config.idle_timeout,
            ping_interval=config.ping_interval,
        )
        try:
            session.receive_hello(msg1)
        except Refusal as refusal:
            if refusal.reply is not None:
                self._push_bytes(frame(BINARY, refusal.reply))
            self._give_up(refusal.why, refusal.close_code, refusal.reason)
            return
        msg2 = session.accept(relay.welcome(self.pow_seed), now)
        self.session = session
        self._push_bytes(frame(BINARY, msg2))
        session.last_rx = now
        # Open: no handshake deadline any more, and the connection counts as established.
        relay.pending.pop(self, None)
        if self._scope is not None:
            self._scope.deadline = math.inf
        relay.metrics.handshake_ok(now - self.accepted)
        self.peer = relay.hub.connect(now, sink=self, pow_seed=self.pow_seed)
        relay.session_opened(self)
        if early:  # frames that came in the same read as message 1
            self._handle(early, now)

    def evict(self) -> None:
        """Drop this connection, still in its handshake, for a newer one: at once,
        without flushing anything it had queued (a refusal being sent included)."""
        if not self.closing:
            self.failure = "evicted"
        self.closing = True
        self.drop_backlog()
        if self._scope is not None:
            self._scope.deadline = -math.inf  # ends now, and waits for no writer after

    def _give_up(self, reason: str, code: int | None = None, text: str = "") -> None:
        """End a handshake that failed for ``reason`` (a metrics label), after what is
        queued and, once upgraded, a close frame with ``code``."""
        if self.closing:
            return
        self.failure = reason
        if code is not None and self.upgraded and not self.close_sent:
            self.close_sent = True
            self._push_bytes(close_frame(code, text))
        self._end()

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete request head, frame or fragmented message held (memory
        budget)."""
        return len(self._head) + (self.reader.buffered if self.reader is not None else 0)

    # ------------------------------------------------------------------ reader

    def on_readable(self, now: float) -> None:
        """Read once and handle what came (the relay's read loop calls this; it
        flushes the whole batch's output afterwards)."""
        try:
            data = os.read(self.fd, RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset: the same as an end of stream here
        if data:
            self._take(data, now)
        else:
            self._eof()

    def _eof(self) -> None:
        """The peer closed or reset: stop reading; the connection task ends it."""
        poller = self.relay.poller
        if poller is not None:
            poller.remove(self)
        if self.peer is None:
            self._give_up("eof")
        else:
            self.close(None, "")

    def _take(self, data: bytes, received: float) -> None:
        """Handle the bytes of one read (synchronously): the handshake's, then frames."""
        if self.peer is None:
            self._handshake_bytes(data, received)
            return
        assert self.session is not None
        assert self.reader is not None
        self.session.last_rx = received
        relay = self.relay
        relay.metrics.bytes_in.inc(len(data))
        try:
            self._handle(self.reader.receive(data), received)
        except FramingError as exc:
            # What came before the bad frame is handled; then the connection ends
            # with the code the framing rules name (1002, 1007, 1009).
            self._handle(exc.events, received)
            relay.flush(received)  # their replies go out before the close frame
            self.close(exc.code, exc.reason)

    def _handle(self, events: list[tuple[int, bytes]], received: float) -> None:
        """Act on the frames one read produced, in order (synchronously)."""
        for opcode, payload in events:
            if self.closing:
                return
            if opcode == BINARY:
                self._on_frame(payload, received)
            elif opcode == PING:
                # A ping is a frame like any other: it costs a token, and a ping flood
                # is refused like a request flood.
                assert self.peer is not None
                if self.relay.hub.charge(self.peer, received) is None:
                    self._push_bytes(frame(PONG, payload))
            elif opcode == CLOSE:
                try:
                    code, _reason = parse_close(payload)
                except FramingError as exc:
                    self.close(exc.code, exc.reason)
                    return
                if not self.close_sent:
                    self.close_sent = True  # echo the peer's code, then hang up
                    self._push_bytes(close_frame(code))
                self.close(None, "")
            elif opcode == TEXT:
                self.close(CLOSE_UNSUPPORTED_DATA, "binary messages only")

    def _on_frame(self, message: bytes, now: float) -> None:
        """Decrypt, decode and dispatch one client frame (synchronously)."""
        assert self.session is not None
        assert self.peer is not None
        relay = self.relay
        try:
            request = self.session.receive(message)
        except DecodeError as exc:
            relay.hub.bad_request(self.peer, exc, exc.request_id, now)
            return
        except ProtocolError as exc:
            # A frame that fails authentication ends this connection and nothing else.
            self.session.fail()
            relay.metrics.frame_rejected()
            self.close(close_code(exc.code), "frame rejected")
            return
        cluster = relay.cluster
        if cluster is not None and cluster.route(self, request, now):
            return  # another process of the cluster handles it
        relay.hub.handle(self.peer, request, now)

    # ------------------------------------------------------------------ writer

    def push_padded(self, padded: bytes) -> None:
        """Encrypt one padded envelope for this peer and queue it (no await)."""
        session = self.session
        if self.closing or session is None or session.transport is None:
            return
        try:
            # The session's transport directly: this is the fan-out's innermost call.
            sealed = session.transport.seal_padded(padded)
        except ProtocolError:
            self.close(close_code(ErrorCode.NONCE_EXHAUSTED), "session exhausted")
            return
        self.buf.append(_FRAME_HEADERS[len(sealed)])
        self.frames += 1
        self._push_bytes(sealed)

    def _push_bytes(self, data: bytes) -> None:
        self.buf.append(data)
        self.backlog += len(data)
        relay = self.relay
        if self.backlog > relay.congested_bytes:
            if self.backlog > relay.config.outbound_backlog_bytes and not self.closing:
                relay.slow_consumer(self)
                return
            if self.peer is not None:
                # Past the low-water mark: room events are pulled from the ring from
                # now on, as this socket drains (``Hub.broadcast``, ``Hub.refill``).
                self.peer.congested = True
        if not self.dirty:
            self.dirty = True
            self.relay.dirty.append(self)

    def kick(self, latency: float) -> None:
        """Write what is queued now if the writer is idle; else leave it to the writer.

        Called once per connection after each flush. Writing synchronously when the
        socket can take it saves a task wake-up and a ``send_all`` per batch (the common
        case); whatever the kernel does not take is handed to the writer task, which
        then waits for the socket to drain. Bytes always leave in queue order.
        """
        self.dirty = False
        buf = self.buf
        if self.sending or not buf:
            return
        if self.fd >= 0:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            try:
                written = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError:
                # The peer is gone; the reader will see it. Nothing more to write.
                self.drop_backlog()
                self.close(None, "")
                return
            metrics = self.relay.metrics
            metrics.latency.observe(latency, self.frames)
            metrics.bytes_out.inc(written)
            self.frames = 0
            buf.clear()
            if written == len(data):
                self.backlog = 0
                peer = self.peer
                if peer is not None and (peer.congested or peer.catching_up):
                    self._wake_writer()  # the writer task refills from the ring
                return
            rest = data[written:]
            buf.append(rest)
            self.backlog = len(rest)
        self._wake_writer()

    def on_timer(self, now: float) -> None:
        """Apply the session's idle and keepalive policy (the relay calls this when
        ``session.next_deadline()`` has passed)."""
        session = self.session
        if session is None or self.closing:
            return
        due = session.handle_timer(now)
        if isinstance(due, TimedOut):
            self.relay.metrics.limit_hit("idle_timeout")
            self.close(due.close_code, due.reason)
        elif due is not None and self.upgraded and not self.close_sent:
            self._push_bytes(frame(PING, b""))

    def _wake_writer(self) -> None:
        """Make sure a writer task runs (it exits again once it has nothing to do).

        Most connections never need one: ``kick`` writes synchronously whenever the
        socket takes everything. A writer is started only for what the socket did not
        take, a refill from the ring, or the close; it re-checks the buffer after every
        await, so a wake-up while it runs is never lost. Not keeping a parked task per
        idle connection saves about 2.4 KB each (docs/benchmarks.md).
        """
        nursery = self.relay.handlers
        if self.writing or nursery is None or self.fd == CLOSED:
            return
        self.writing = True
        nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        """Flush the buffer to the socket; refill from the rings; finish the close.

        Runs in the relay's handler nursery, so it handles its own errors: a peer that
        went away (or a socket closed under it) ends the connection, and a bug in here
        is logged and ends only this connection, never the relay.
        """
        stream = self.stream
        buf = self.buf
        try:
            while True:
                if not buf:
                    if self.closing:
                        # Flushed: stop the reader too, and with it the connection.
                        if self._scope is not None:
                            self._scope.cancel()
                        return
                    peer = self.peer
                    if peer is not None:
                        peer.congested = False
                        if peer.catching_up:
                            # Drained while seats are behind: pull the next part of
                            # their rooms' rings, then yield before writing it.
                            self.relay.refill(self)
                            await trio.lowlevel.checkpoint()
                            continue
                    return  # idle: the next wake-up starts a writer again
                data = buf[0] if len(buf) == 1 else b"".join(buf)
                buf.clear()
                self.backlog = 0
                frames, self.frames = self.frames, 0
                queued = trio.current_time()
                self.sending = True
                try:
                    await stream.send_all(data)
                finally:
                    self.sending = False
                self.relay.metrics.latency.observe(trio.current_time() - queued, frames)
                self.relay.metrics.bytes_out.inc(len(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.abort()
        except Exception:
            log.exception("connection writer failed")
            self.abort()
        finally:
            self.writing = False
            if self._flushed is not None:
                self._flushed.set()

    def abort(self) -> None:
        """End this connection at once, dropping what is queued: nothing more can be
        written, or handling its bytes hit a bug (``ReadPoller.handle_ready``)."""
        self.drop_backlog()
        self.close(None, "")
        if self._scope is not None:
            self._scope.cancel()

    def close(self, code: int | None, reason: str) -> None:
        """Begin closing: queue a close frame, stop reading, flush within a deadline."""
        if self.closing:
            return
        # Only the close code is logged: never who, never which room.
        log.debug("closing a connection with code %s", code if code is not None else "none")
        self.relay.metrics.closed(code)
        if code is not None and self.upgraded and not self.close_sent:
            self.close_sent = True
            self.buf.append(close_frame(code, reason))
        self._end()
        if self.peer is not None:
            # Stop routing to this peer at once; its seats are held for resume.
            self.relay.hub.disconnect(self.peer, trio.current_time())

    def _end(self) -> None:
        """Stop reading; let the writer flush what is queued (within the close
        deadline) and then end the connection, or end it now if nothing is queued."""
        if self.closing:
            return
        self.closing = True
        scope = self._scope
        if self.buf or self.writing:
            # The writer flushes, then cancels the connection's scope; by the deadline.
            self._wake_writer()
            if scope is not None:
                scope.deadline = min(
                    scope.deadline, trio.current_time() + self.relay.config.close_timeout
                )
        elif scope is not None:
            scope.cancel()  # nothing to flush: stop now

    def drop_backlog(self) -> None:
        """Forget queued bytes (a slow consumer's backlog is not worth flushing)."""
        self.buf.clear()
        self.backlog = 0
        self.frames = 0


__all__ = ["ClientSocket"]

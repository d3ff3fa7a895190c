"""Load generator worker: many WebSocket clients in one process, driven by one epoll loop.

Why not Trio (or trio-websocket) here: the relay under test runs on Trio, and on this
machine Trio's cost per await and per socket wait is what bounds a relay (see
``../shared/PERFORMANCE.md``). A generator on the same runtime would cost about as
much per message as the relay it drives, and with one core each it would saturate
first. So each worker sets its connections up with plain blocking sockets, then runs
one ``select.epoll`` loop with hand-written RFC 6455 framing (client frames are masked
with a random per-connection key, as the RFC requires). For Haven it speaks the real
protocol: Noise NK handshake, then padded, encrypted msgpack envelopes through
``protocol.frames.Transport``; setup uses ``protocol.codec`` and ``protocol.messages``.

A room's members all live in one worker, so the worker sees every delivery of every
message it sent. That gives the closed loop its back-pressure: each member keeps at most
``window`` messages that have not yet reached all the other members. Bodies carry the
send time (``time.monotonic_ns``, one clock for all processes on Linux), the sender and
a counter, so latency is measured send -> receipt at every receiver.

Workers are started by ``bench.relay_bench``, which talks to them over a pipe:
``("ready", info)`` after setup, then ``("start", t0_ns)``, then ``("result", dict)``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any
from urllib.parse import urlsplit

import msgpack
from hdrh.histogram import HdrHistogram

from haven.protocol import SUBPROTOCOL, codec, pow
from haven.protocol import messages as m
from haven.protocol.session import (
    ClientSession,
    FrameRejected,
    Pushed,
    ReplyReceived,
    Undecodable,
    Welcomed,
)

#: Body layout: send time (ns), sender id, sender's message counter; zero-padded.
BODY_HEAD = struct.Struct("<QII")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECV_SIZE = 262144
#: Latency histogram range: 1 µs .. 60 s, 3 significant digits.
HIST_ARGS = (1, 60_000_000, 3)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process does."""

    kind: str  #: "bare" or "haven"
    url: str
    relay_key: bytes | None  #: Haven relay public key (None for the bare relay)
    index: int  #: worker number (names bare rooms apart)
    rooms: int
    room_size: int
    mode: str  #: "closed", "open", "idle" or "setup"
    window: int = 1  #: closed loop: undelivered messages per member
    rate: float = 0.0  #: open loop: messages/s sent by this worker
    warmup: float = 2.0
    duration: float = 10.0
    body_size: int = 128
    cpu: int | None = None  #: pin to this CPU
    warm_connections: int = 0  #: idle mode: connections opened before the first RSS sample


class BenchError(Exception):
    """The relay refused or broke a bench connection."""


class Client:
    """One WebSocket connection (and, for Haven, its Noise transport)."""

    __slots__ = (
        "buf",
        "code",
        "gid",
        "mask",
        "mask_ints",
        "next_id",
        "pending",
        "room",
        "sent",
        "session",
        "sock",
    )

    def __init__(self, sock: socket.socket, gid: int, room: int) -> None:
        self.sock = sock
        self.gid = gid  #: unique sender id within the worker
        self.room = room
        self.buf = b""
        self.mask = os.urandom(4)
        self.mask_ints: dict[int, int] = {}
        #: Haven only: the session (handshake, ids, sealing); ``None`` for the bare relay.
        self.session: ClientSession | None = None
        self.code = ""  #: Haven room code
        self.sent = 0
        self.pending: deque[bytes] = deque()

    # ------------------------------------------------------------- framing

    def frame(self, payload: bytes) -> bytes:
        """A masked, final, binary client frame carrying ``payload``."""
        n = len(payload)
        mask_int = self.mask_ints.get(n)
        if mask_int is None:
            mask_int = int.from_bytes((self.mask * (n // 4 + 1))[:n], "little")
            self.mask_ints[n] = mask_int
        masked = (int.from_bytes(payload, "little") ^ mask_int).to_bytes(n, "little")
        if n < 126:
            head = bytes((0x82, 0x80 | n))
        elif n < 65536:
            head = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
        return head + self.mask + masked

    def feed(self, data: bytes) -> list[bytes]:
        """Parse server frames (unmasked) from ``data``; returns binary payloads."""
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            hdr = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hdr = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            stop = pos + hdr + n
            if stop > end:
                break
            op = b0 & 0x0F
            if op == 2:
                out.append(buf[pos + hdr : stop])
            elif op == 9:  # ping: answer with a pong carrying the same data
                data = buf[pos + hdr : stop]
                self.sock.sendall(self._control(0x8A, data))
            elif op == 8:
                raise BenchError(f"relay closed the connection: {buf[pos + hdr : stop]!r}")
            elif op != 0xA:
                raise BenchError(f"unexpected opcode {op}")
            pos = stop
        self.buf = buf[pos:] if pos < end else b""
        return out

    def _control(self, b0: int, payload: bytes) -> bytes:
        n = len(payload)
        masked = bytes(b ^ self.mask[i % 4] for i, b in enumerate(payload))
        return bytes((b0, 0x80 | n)) + self.mask + masked

    def next_payload(self) -> bytes:
        """Blocking: the next binary message (setup only)."""
        while not self.pending:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise BenchError("relay hung up")
            self.pending.extend(self.feed(data))
        return self.pending.popleft()

    # ---------------------------------------------------------------- Haven

    def exchange(self, build: Callable[[int], m.Request]) -> m.Reply:
        """Blocking: send one Haven request and return its reply (setup only)."""
        session = self.session
        assert session is not None
        request = build(session.take_id())
        self.sock.sendall(self.frame(session.send(request)))
        while True:
            event = session.receive(self.next_payload())
            if isinstance(event, ReplyReceived) and event.reply.id == request.id:
                if isinstance(event.reply, m.Error):
                    raise BenchError(f"relay refused request: {event.reply}")
                return event.reply
            if isinstance(event, FrameRejected | Undecodable):
                raise BenchError(f"bad frame during setup: {event}")


def _upgrade(url: str, path: str, subprotocol: str | None) -> socket.socket:
    """Blocking TCP connect and WebSocket upgrade; returns the socket."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError("relay hung up during the upgrade")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if rest:
        raise BenchError("unexpected bytes after the upgrade response")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise BenchError(f"upgrade refused: {status!r}")
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    if b"sec-websocket-accept: " + accept.lower() not in head.lower():
        raise BenchError("bad Sec-WebSocket-Accept")
    return sock


def connect_bare(spec: WorkerSpec, room: int, gid: int) -> Client:
    """A bare-relay member: the room is the request path."""
    sock = _upgrade(spec.url, f"/w{spec.index}-r{room}", None)
    return Client(sock, gid, room)


def connect_haven(spec: WorkerSpec, room: int, gid: int) -> Client:
    """A Haven client after the Noise NK handshake (not yet in a room)."""
    assert spec.relay_key is not None
    sock = _upgrade(spec.url, "/", SUBPROTOCOL)
    client = Client(sock, gid, room)
    session = ClientSession(spec.relay_key)
    sock.sendall(client.frame(session.start()))
    event = session.receive(client.next_payload())
    if not isinstance(event, Welcomed):
        raise BenchError(f"handshake refused: {event}")
    client.session = session
    return client


def setup_room(spec: WorkerSpec, room: int, first_gid: int) -> list[Client]:
    """Open ``room_size`` connections sharing one room."""
    members: list[Client] = []
    if spec.kind == "bare":
        return [connect_bare(spec, room, first_gid + i) for i in range(spec.room_size)]
    creator = connect_haven(spec, room, first_gid)
    assert creator.session is not None
    challenge = creator.session.challenge
    assert challenge is not None
    # The difficulty is 0 unless admission control is on.
    seed, difficulty = challenge.seed, challenge.difficulty

    def create(i: int) -> m.CreateRoom:
        nonce = pow.solve(seed, i, difficulty) if difficulty else None
        if spec.room_size == 2:
            return m.CreateRoom(id=i, kind="direct", pow=nonce)
        return m.CreateRoom(id=i, kind="group", max_members=spec.room_size, pow=nonce)

    joined = creator.exchange(create)
    assert isinstance(joined, m.Joined)
    creator.code = joined.seat.room
    members.append(creator)
    for i in range(1, spec.room_size):
        member = connect_haven(spec, room, first_gid + i)
        member.exchange(lambda rid: m.Join(id=rid, room=creator.code))
        member.code = creator.code
        members.append(member)
    return members


class Run:
    """The measured phase: epoll loop, counters, latency histogram."""

    def __init__(self, spec: WorkerSpec, clients: list[Client]) -> None:
        self.spec = spec
        self.clients = clients
        self.by_fd = {c.sock.fileno(): c for c in clients}
        self.by_gid = {c.gid: c for c in clients}
        self.room_size = spec.room_size
        self.hist = HdrHistogram(*HIST_ARGS)
        self.sent = 0
        self.delivered = 0
        self.other = 0  #: non-delivery frames received (acks, presence) in the window
        self.errors = 0
        self.first_error = ""
        self.remaining: dict[int, int] = {}
        self.pad = bytes(spec.body_size - BODY_HEAD.size)
        self.in_window = False
        self.window_start = 0
        self.window_end = 0
        self.max_lag_ns = 0
        self.pack = msgpack.Packer(use_bin_type=True).pack
        self._check_envelope()

    def _check_envelope(self) -> None:
        """The fast path must produce exactly what ``codec.encode`` does."""
        body = bytes(self.spec.body_size)
        want = codec.encode(m.Send(id=7, room="ABCD-EFGH", body=body))
        got = self.pack({"t": "send", "id": 7, "room": "ABCD-EFGH", "body": body})
        if want != got:
            raise BenchError("fast-path send envelope differs from codec.encode")

    def payload(self, client: Client, now_ns: int) -> bytes:
        """The next wire frame from ``client`` (body stamped with ``now_ns``)."""
        client.sent += 1
        body = BODY_HEAD.pack(now_ns, client.gid, client.sent) + self.pad
        if self.in_window:
            self.sent += 1
        if self.room_size > 1:
            self.remaining[(client.gid << 32) | client.sent] = self.room_size - 1
        session = client.session
        if session is None:
            return client.frame(body)
        rid = session.take_id()
        envelope = self.pack({"t": "send", "id": rid, "room": client.code, "body": body})
        return client.frame(session.seal_envelope(envelope))

    def bodies(self, client: Client, data: bytes) -> list[bytes]:
        """Delivered bodies among the frames in ``data`` (decrypting for Haven)."""
        payloads = client.feed(data)
        session = client.session
        if session is None:
            return payloads
        out = []
        open_envelope = session.open_envelope
        for wire in payloads:
            env = msgpack.unpackb(open_envelope(wire), raw=False)
            t = env.get("t")
            if t == "deliver":
                out.append(env["body"])
            else:
                if self.in_window:
                    self.other += 1
                if t == "error":
                    self.errors += 1
                    self.first_error = self.first_error or repr(env)
        return out

    def run(self, t0_ns: int) -> dict[str, Any]:
        spec = self.spec
        self.window_start = t0_ns + int(spec.warmup * 1e9)
        self.window_end = self.window_start + int(spec.duration * 1e9)
        ep = select.epoll()
        for fd in self.by_fd:
            ep.register(fd, select.EPOLLIN)
        for c in self.clients:
            c.pending.clear()
        while time.monotonic_ns() < t0_ns:
            time.sleep(0.001)
        cpu0 = cpu1 = 0.0
        try:
            if spec.mode == "closed":
                cpu0, cpu1 = self._closed(ep)
            else:
                cpu0, cpu1 = self._open(ep)
        finally:
            ep.close()
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "other": self.other,
            "errors": self.errors,
            "first_error": self.first_error,
            "cpu_s": cpu1 - cpu0,
            "window_s": (self.window_end - self.window_start) / 1e9,
            "max_lag_ms": self.max_lag_ns / 1e6,
            "hist": self.hist.encode().decode("ascii"),
        }

    def _receive(self, client: Client, now: int) -> list[int]:
        """Handle what one readable socket holds; returns senders whose message completed."""
        data = client.sock.recv(RECV_SIZE)
        if not data:
            raise BenchError("relay hung up")
        done: list[int] = []
        unpack = BODY_HEAD.unpack_from
        remaining = self.remaining
        record = self.hist.record_value
        in_window = self.in_window
        for body in self.bodies(client, data):
            ts, gid, seq = unpack(body)
            if in_window:
                self.delivered += 1
                record(max(1, (now - ts) // 1000))
            key = (gid << 32) | seq
            left = remaining[key] - 1
            if left:
                remaining[key] = left
            else:
                del remaining[key]
                done.append(gid)
        return done

    def _closed(self, ep: select.epoll) -> tuple[float, float]:
        """Each member keeps ``window`` messages in flight; a delivery to all frees one."""
        by_fd, by_gid = self.by_fd, self.by_gid
        cpu0 = cpu1 = 0.0
        now = time.monotonic_ns()
        for c in self.clients:
            c.sock.sendall(b"".join(self.payload(c, now) for _ in range(self.spec.window)))
        while True:
            events = ep.poll(0.05)
            now = time.monotonic_ns()
            if not self.in_window and now >= self.window_start and not cpu0:
                self.in_window = True
                cpu0 = time.process_time()
            if now >= self.window_end:
                cpu1 = time.process_time()
                break
            outgoing: dict[int, list[bytes]] = {}
            for fd, _ in events:
                for gid in self._receive(by_fd[fd], now):
                    outgoing.setdefault(gid, []).append(self.payload(by_gid[gid], now))
            for gid, chunks in outgoing.items():
                by_gid[gid].sock.sendall(b"".join(chunks))
        return cpu0, cpu1

    def _open(self, ep: select.epoll) -> tuple[float, float]:
        """Send at a fixed total rate, round-robin over members, stamped with the due time."""
        by_fd = self.by_fd
        senders = sorted(self.clients, key=lambda c: (c.gid % self.room_size, c.room))
        interval = int(1e9 / self.spec.rate)
        due = time.monotonic_ns()
        i = 0
        cpu0 = cpu1 = 0.0
        while True:
            timeout = max(0.0, (due - time.monotonic_ns()) / 1e9)
            events = ep.poll(timeout)
            now = time.monotonic_ns()
            if not self.in_window and now >= self.window_start and not cpu0:
                self.in_window = True
                cpu0 = time.process_time()
            if now >= self.window_end:
                cpu1 = time.process_time()
                break
            for fd, _ in events:
                self._receive(by_fd[fd], now)
            now = time.monotonic_ns()
            while due <= now:
                if self.in_window:
                    self.max_lag_ns = max(self.max_lag_ns, now - due)
                c = senders[i]
                i = (i + 1) % len(senders)
                c.sock.sendall(self.payload(c, due))
                due += interval
        return cpu0, cpu1


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def open_rooms(spec: WorkerSpec, rooms: int, first_room: int = 0) -> list[Client]:
    """Set up ``rooms`` rooms of ``spec.room_size`` members each."""
    clients: list[Client] = []
    for r in range(first_room, first_room + rooms):
        clients.extend(setup_room(spec, r, r * spec.room_size))
    return clients


def pair_setup(spec: WorkerSpec, room: int, gid: int) -> None:
    """One pair setup, the connection-setup cost a relay pays when people arrive: two
    connections (WebSocket upgrades; for Haven also Noise NK, then ``create_room`` and
    ``join``), the first message from one to the other, and both hang up (with a reset,
    so thousands of setups do not exhaust the loopback's ports in TIME_WAIT)."""
    members = setup_room(spec, room, gid)
    try:
        first, second = members
        body = bytes(spec.body_size)
        if first.session is None or second.session is None:
            first.sock.sendall(first.frame(body))
            second.next_payload()
            return
        send = m.Send(id=first.session.take_id(), room=first.code, body=body)
        first.sock.sendall(first.frame(first.session.send(send)))
        while True:
            event = second.session.receive(second.next_payload())
            if isinstance(event, Pushed) and isinstance(event.message, m.Deliver):
                return
            if isinstance(event, FrameRejected | Undecodable):
                raise BenchError(f"bad frame during a pair setup: {event}")
    finally:
        for client in members:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.sock.close()


def run_setups(spec: WorkerSpec, t0_ns: int) -> dict[str, Any]:
    """``spec.rooms`` pair setups at a time, back to back, for warm-up + duration.

    Counted when both the start and the end of a setup fall in the measured window;
    the histogram holds each counted setup's time (µs).
    """
    window_start = t0_ns + int(spec.warmup * 1e9)
    window_end = window_start + int(spec.duration * 1e9)
    times: list[list[int]] = [[] for _ in range(spec.rooms)]
    errors: list[str] = []

    def loop(slot: int) -> None:
        room = spec.index * 100_000 + slot
        while (began := time.monotonic_ns()) < window_end:
            try:
                pair_setup(spec, room, room * 2)
            except (BenchError, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            done = time.monotonic_ns()
            if began >= window_start and done <= window_end:
                times[slot].append((done - began) // 1000)

    time.sleep(max(0.0, (t0_ns - time.monotonic_ns()) / 1e9))
    cpu0 = time.process_time()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(spec.rooms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hist = HdrHistogram(*HIST_ARGS)
    counted = 0
    for slot in times:
        counted += len(slot)
        for micros in slot:
            hist.record_value(max(1, micros))
    return {
        "sent": counted,
        "delivered": counted,
        "other": 0,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "cpu_s": time.process_time() - cpu0,  # warm-up included: an upper bound
        "window_s": (window_end - window_start) / 1e9,
        "max_lag_ms": 0.0,
        "hist": hist.encode().decode("ascii"),
    }


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """Process entry point (see the module docstring for the pipe protocol)."""
    _pin(spec.cpu)
    clients: list[Client] = []
    try:
        if spec.mode == "idle":
            warm_rooms = spec.warm_connections // spec.room_size
            clients = open_rooms(spec, warm_rooms)
            pipe.send(("warm", len(clients)))
            pipe.recv()
            clients += open_rooms(spec, spec.rooms, warm_rooms)
            pipe.send(("ready", len(clients)))
            pipe.recv()  # "stop"
            pipe.send(("result", {"connections": len(clients)}))
            return
        if spec.mode == "setup":
            pipe.send(("ready", 0))
            _, t0_ns = pipe.recv()
            pipe.send(("result", run_setups(spec, t0_ns)))
            return
        clients = open_rooms(spec, spec.rooms)
        pipe.send(("ready", len(clients)))
        _, t0_ns = pipe.recv()
        pipe.send(("result", Run(spec, clients).run(t0_ns)))
    except (BenchError, OSError, ValueError) as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for c in clients:
            c.sock.close()

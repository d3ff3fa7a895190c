"""The Trio NATS client against a real nats-server on loopback."""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from haven.cluster import wire
from haven.cluster.nats import (
    AuthError,
    NatsClient,
    NoResponders,
    NotConnected,
    Options,
    Overflow,
    RequestTimeout,
    Server,
)
from tests.client.netkit import self_signed

from .natskit import NatsServer, nats_server


@asynccontextmanager
async def running(
    urls: list[str], on_state: Callable[[bool], None] | None = None, **options: object
) -> AsyncIterator[NatsClient]:
    opts = Options([Server.parse(u) for u in urls], **options)  # type: ignore[arg-type]
    client = NatsClient(opts, on_state)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            await client.wait_connected()
        yield client
        nursery.cancel_scope.cancel()


class Inbox:
    """Collects delivered messages; ``wait(n)`` until ``n`` have arrived."""

    def __init__(self) -> None:
        self.messages: list[wire.Msg] = []
        self._changed = trio.Event()

    def __call__(self, msg: wire.Msg) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def wait(self, n: int) -> list[wire.Msg]:
        with trio.fail_after(10):
            while len(self.messages) < n:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.messages


@pytest.fixture
def server(tmp_path: Path) -> NatsServer:
    with nats_server(tmp_path) as s:
        yield s


async def test_publish_reaches_a_subscriber_on_another_connection(server: NatsServer) -> None:
    async with running([server.url]) as a, running([server.url]) as b:
        inbox = Inbox()
        b.subscribe(b"hv.room", inbox)
        await b.flush()
        payloads = [bytes([i]) * (i * 100) for i in range(50)]
        for p in payloads:
            a.publish(b"hv.room", p)
        got = await inbox.wait(50)
        assert [m.payload for m in got] == payloads  # one publisher's order is kept
        assert all(m.subject == b"hv.room" and m.reply is None for m in got)


async def test_no_echo_of_our_own_publications_by_default(server: NatsServer) -> None:
    async with running([server.url]) as a, running([server.url]) as b:
        mine, theirs = Inbox(), Inbox()
        a.subscribe(b"hv.x", mine)
        b.subscribe(b"hv.x", theirs)
        await a.flush()
        await b.flush()
        a.publish(b"hv.x", b"one")
        await theirs.wait(1)
        await a.flush()
        assert mine.messages == []


async def test_queue_group_gives_each_message_to_exactly_one_member(server: NatsServer) -> None:
    async with (
        running([server.url]) as pub,
        running([server.url]) as s1,
        running([server.url]) as s2,
    ):
        i1, i2 = Inbox(), Inbox()
        s1.subscribe(b"hv.queue", i1, queue=b"staff")
        s2.subscribe(b"hv.queue", i2, queue=b"staff")
        await s1.flush()
        await s2.flush()
        for i in range(200):
            pub.publish(b"hv.queue", str(i).encode())
        with trio.fail_after(10):
            while len(i1.messages) + len(i2.messages) < 200:  # noqa: ASYNC110
                await trio.sleep(0.01)
        got = sorted(int(m.payload) for m in i1.messages + i2.messages)
        assert got == list(range(200))
        assert i1.messages  # both members took some
        assert i2.messages


async def test_request_reply_no_responders_and_timeout(server: NatsServer) -> None:
    async with running([server.url]) as asker, running([server.url]) as answerer:

        def answer(msg: wire.Msg) -> None:
            assert msg.reply is not None
            answerer.publish(msg.reply, b"re:" + msg.payload)

        answerer.subscribe(b"hv.ask", answer)
        await answerer.flush()
        reply = await asker.request(b"hv.ask", b"q1")
        assert reply.payload == b"re:q1"
        with pytest.raises(NoResponders):
            await asker.request(b"hv.nobody", b"q2")
        silent = Inbox()
        answerer.subscribe(b"hv.silent", silent)
        await answerer.flush()
        with pytest.raises(RequestTimeout):
            await asker.request(b"hv.silent", b"q3", within=0.2)


async def test_headers_round_trip(server: NatsServer) -> None:
    async with running([server.url]) as a, running([server.url]) as b:
        inbox = Inbox()
        b.subscribe(b"hv.h", inbox)
        await b.flush()
        a.publish_headers(b"hv.h", {"Haven-Kind": "probe"}, b"body")
        (msg,) = await inbox.wait(1)
        assert msg.payload == b"body"
        assert msg.headers is not None
        assert b"Haven-Kind: probe" in msg.headers


async def test_reconnects_and_resubscribes_after_the_server_comes_back(server: NatsServer) -> None:
    states: list[bool] = []
    async with (
        running([server.url], on_state=states.append, reconnect_max=0.2) as a,
        running([server.url], reconnect_max=0.2) as b,
    ):
        inbox = Inbox()
        b.subscribe(b"hv.r", inbox)
        await b.flush()
        a.publish(b"hv.r", b"before")
        await inbox.wait(1)
        server.stop()
        with trio.fail_after(10):
            while a.connected:  # noqa: ASYNC110 (client state)
                await trio.sleep(0.01)
        # While the link is down, work is refused at once with a typed error.
        with pytest.raises(NotConnected):
            a.publish(b"hv.r", b"lost")
        server.start()  # on the same port
        await a.wait_connected()
        await b.wait_connected()
        await b.flush()  # b's subscription is back on the new server
        a.publish(b"hv.r", b"after")
        got = await inbox.wait(2)
        assert [m.payload for m in got] == [b"before", b"after"]
        assert states[:3] == [True, False, True]
        assert a.reconnects >= 1
        assert a.dropped >= 1


async def test_outbound_buffer_is_bounded(server: NatsServer) -> None:
    async with running([server.url], max_outbound=64 * 1024) as a:
        # Synchronously: the writer gets no chance to drain in between.
        # Each is 1,045 bytes on the wire (PUB line, payload, CRLF): 62 fit, not 63.
        for _ in range(62):
            a.publish(b"hv.flood", b"x" * 1024)
        with pytest.raises(Overflow):
            a.publish(b"hv.flood", b"x" * 1024)
        assert a.dropped == 1
        await a.flush()  # and the link is still good


async def test_payload_over_the_servers_limit_is_refused(tmp_path: Path) -> None:
    with nats_server(tmp_path, "max_payload: 4096") as server:
        async with running([server.url]) as a:
            a.publish(b"hv.big", b"x" * 4096)
            with pytest.raises(ValueError, match="max_payload"):
                a.publish(b"hv.big", b"x" * 4097)
            await a.flush()


async def test_user_password_auth(tmp_path: Path) -> None:
    config = 'authorization { user: "relay", password: "s3cret-pass" }'
    with nats_server(tmp_path, config) as server:
        async with running([server.url], user="relay", password="s3cret-pass") as a:
            await a.flush()
        url = f"nats://relay:s3cret-pass@127.0.0.1:{server.port}"
        async with running([url]) as b:
            await b.flush()
        wrong = NatsClient(Options([Server.parse(server.url)], user="relay", password="no"))
        with trio.fail_after(10):
            with pytest.raises(AuthError):
                await wrong._session(wrong.options.servers[0])


async def test_tls(tmp_path: Path) -> None:
    certs = self_signed(tmp_path)
    config = f'tls {{ cert_file: "{tmp_path / "cert.pem"}", key_file: "{tmp_path / "key.pem"}" }}'
    with nats_server(tmp_path, config) as server:
        async with (
            running([f"tls://127.0.0.1:{server.port}"], tls=certs.trusting_client) as a,
            running([f"tls://127.0.0.1:{server.port}"], tls=certs.trusting_client) as b,
        ):
            inbox = Inbox()
            b.subscribe(b"hv.t", inbox)
            await b.flush()
            a.publish(b"hv.t", b"over tls")
            assert (await inbox.wait(1))[0].payload == b"over tls"
        # A client that does not trust the certificate never connects.
        untrusting = NatsClient(Options([Server.parse(f"tls://127.0.0.1:{server.port}")]))
        with trio.fail_after(10):
            with pytest.raises(trio.BrokenResourceError) as failed:
                await untrusting._session(untrusting.options.servers[0])
        assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)


async def test_stale_link_is_noticed_by_pings(tmp_path: Path) -> None:
    """A server that stops answering (SIGSTOP) is given up on after missed pings."""
    with nats_server(tmp_path) as server:
        states: list[bool] = []
        async with running(
            [server.url], on_state=states.append, ping_interval=0.1, max_pings_out=2
        ) as a:
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                with trio.fail_after(10):
                    while a.connected:  # noqa: ASYNC110 (client state)
                        await trio.sleep(0.02)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert states[:2] == [True, False]
            with trio.fail_after(10):
                await a.wait_connected()

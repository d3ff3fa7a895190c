"""Runtime-neutral test kit for the SDK: a real relay process, a TCP proxy that can cut
every connection (a flaky network), a TLS front with a self-signed certificate, and an
HTTP server that refuses WebSocket upgrades.

Everything here is anyio, so one scenario runs under Trio and under asyncio unchanged
(``anyio.run(scenario, backend=...)``), against the same real relay on loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"haven relay (ws://127\.0\.0\.1:(\d+)) key=([A-Za-z0-9_-]{43})")


@dataclass
class RelayProcess:
    """A ``python -m haven serve --demo`` child on free loopback ports."""

    proc: subprocess.Popen[str]
    url: str = ""
    port: int = 0
    key: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def drain(self) -> None:
        """SIGTERM: the relay tells its clients ``draining`` and exits."""
        self.proc.send_signal(signal.SIGTERM)


@contextmanager
def relay_process(*extra: str) -> Iterator[RelayProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "serve", "--demo", "--port", "0", "--pages-port", "0",
         "--metrics-port", "none", "--drain-grace", "5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    relay = RelayProcess(proc)
    try:
        assert proc.stdout is not None
        match = BANNER.fullmatch(proc.stdout.readline().strip())
        assert match, "the relay printed no banner"
        relay.url, relay.port, relay.key = match[1], int(match[2]), match[3]
        for line in proc.stdout:
            if line.startswith("token "):
                _, role, text = line.split()
                relay.tokens[role] = text
            elif line.startswith("demo mode:"):
                break
        yield relay
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


class Proxy:
    """A TCP proxy to the relay whose connections the test can cut all at once.

    ``cut()`` resets every proxied connection (as a phone losing its network would);
    while ``offline`` is set, new connections are refused the same way. With ``tls``,
    it terminates TLS first (a ``wss://`` front); with ``refuse_status``, it answers
    every HTTP request with that status instead of proxying (a proxy with no backend).
    """

    def __init__(
        self,
        target_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        refuse_status: int | None = None,
    ) -> None:
        self.target_port = target_port
        self.tls = tls
        self.refuse_status = refuse_status
        self.port = 0
        self.offline = False
        self.connections = 0
        self._scopes: set[anyio.CancelScope] = set()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener: anyio.abc.Listener[anyio.abc.ByteStream]
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = tcp.extra(anyio.abc.SocketAttribute.local_port)
        listener = TLSListener(tcp, self.tls, standard_compatible=False) if self.tls else tcp
        async with listener:
            task_status.started()
            await listener.serve(self._handle)

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def _handle(self, client: anyio.abc.ByteStream) -> None:
        self.connections += 1
        async with client:
            if self.offline:
                return
            if self.refuse_status is not None:
                with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    await client.receive()
                    await client.send(
                        f"HTTP/1.1 {self.refuse_status} Refused\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                    )
                return
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
                    async with upstream, anyio.create_task_group() as tg:
                        tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                        tg.start_soon(_pump, upstream, client, tg.cancel_scope)
                finally:
                    self._scopes.discard(scope)


async def _pump(
    src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream, scope: anyio.CancelScope
) -> None:
    try:
        async for chunk in src:
            await dst.send(chunk)
    except (
        anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
        ssl.SSLError, OSError,
    ):  # fmt: skip
        # (EndOfStream: a TLS peer that closed while we were writing to it, a race
        # between the two directions when a client hangs up.)
        pass
    scope.cancel()


@dataclass(frozen=True)
class SelfSigned:
    """A certificate for 127.0.0.1 and the contexts to serve it and to trust it."""

    server: ssl.SSLContext
    trusting_client: ssl.SSLContext


def self_signed(tmp: Path) -> SelfSigned:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "haven test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp / "cert.pem"
    key_pem = tmp / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(cert_pem))
    return SelfSigned(server, client)


__all__ = ["Proxy", "RelayProcess", "SelfSigned", "relay_process", "self_signed"]

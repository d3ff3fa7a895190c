"""The deploy/ files checked by their real tools, and real WebSocket traffic through nginx.

Each tool comes from Debian's packages (``./scripts/test`` installs nginx, haproxy and
prometheus when missing); a missing tool fails the test loudly rather than skipping.
Certificates are made per test (self-signed, for 127.0.0.1) so the shipped configs are
checked with only their certificate paths, log paths and ports replaced.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from haven import client
from tests.conftest import start_relay

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: run ./scripts/test, which installs it")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def make_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert, key, cert+key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    paths = directory / "cert.pem", directory / "key.pem", directory / "both.pem"
    paths[0].write_bytes(cert_pem)
    paths[1].write_bytes(key_pem)
    paths[2].write_bytes(cert_pem + key_pem)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx_config(tmp: Path, listen_port: int | None = None, relay_port: int = 8765) -> Path:
    """The shipped snippet inside a minimal nginx.conf, with test paths (and ports)."""
    cert, key, _ = make_cert(tmp)
    snippet = (DEPLOY / "nginx" / "haven.conf").read_text()
    snippet = snippet.replace("/etc/ssl/haven/fullchain.pem", str(cert))
    snippet = snippet.replace("/etc/ssl/haven/privkey.pem", str(key))
    snippet = snippet.replace("/var/log/nginx/", f"{tmp}/")
    snippet = snippet.replace("server 127.0.0.1:8765;", f"server 127.0.0.1:{relay_port};")
    if listen_port is not None:
        snippet = snippet.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;")
        snippet = snippet.replace("listen [::]:443 ssl;", "")
    (tmp / "haven.conf").write_text(snippet)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log;\nevents {{}}\nhttp {{\n"
        f"  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n"
        f"  scgi_temp_path {tmp}/scgi;\n  include {tmp}/haven.conf;\n}}\n"
    )
    path = tmp / "nginx.conf"
    path.write_text(main)
    return path


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    conf = nginx_config(tmp_path)
    run(tool("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf))


def test_haproxy_accepts_the_shipped_config(tmp_path: Path) -> None:
    _, _, both = make_cert(tmp_path)
    cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    cfg = cfg.replace("/etc/ssl/haven/relay.pem", str(both))
    (tmp_path / "haproxy.cfg").write_text(cfg)
    run(tool("haproxy"), "-c", "-f", str(tmp_path / "haproxy.cfg"))


def test_systemd_accepts_the_shipped_unit(tmp_path: Path) -> None:
    unit = (DEPLOY / "haven.service").read_text()
    haven = Path(sys.executable).with_name("haven")
    assert haven.exists(), haven
    (tmp_path / "haven.service").write_text(unit.replace("/opt/haven/venv/bin/haven", str(haven)))
    # /proc/stat must stay visible: the process_* series (CPU, RSS, the memory alert,
    # the dashboard's per-relay panels) are read from it.
    assert not re.search(r"^ProcSubset=", unit, re.MULTILINE)
    done = run(tool("systemd-analyze"), "verify", str(tmp_path / "haven.service"))
    assert "haven.service" not in done.stderr, done.stderr  # no warning about the unit


def test_prometheus_config_rules_and_alert_unit_tests(tmp_path: Path) -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    run(promtool, "check", "rules", "haven-alerts.yml", cwd=DEPLOY / "prometheus")
    done = run(promtool, "test", "rules", "haven-alerts.test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in done.stdout


async def test_websocket_traffic_through_nginx(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = await start_relay(nursery)
    relay_port = int(info.url.rsplit(":", 1)[1])
    port = free_port()
    conf = nginx_config(tmp_path, listen_port=port, relay_port=relay_port)
    # A plain Popen: nginx is a child for this test only (terminated below).
    proc = subprocess.Popen(  # noqa: ASYNC220
        [tool("nginx"), "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                probe = await trio.open_tcp_stream("127.0.0.1", port)
                await probe.aclose()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                await trio.sleep(0.1)
        cert = tmp_path / "cert.pem"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate
        url = f"wss://127.0.0.1:{port}/"
        with trio.fail_after(30):
            async with client.connect(url, info.key_text) as a, \
                    client.connect(url, info.key_text) as b:  # fmt: skip
                room = await a.create_room(kind="group")
                theirs = await b.join(room.code)
                await room.send(b"through nginx")
                b.interrupt()  # the receiver's link drops: it resumes through nginx
                await room.send(b"after the drop")
                got = []
                async for event in theirs.events():
                    body = getattr(event, "body", None)
                    if body is not None:
                        got.append(body)
                    if body == b"after the drop":
                        break
                assert got == [b"through nginx", b"after the drop"]
                assert info.relay.hub.stats["resumes"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def test_every_alert_has_unit_tests_a_table_row_and_a_runbook_entry() -> None:
    text = (DEPLOY / "prometheus" / "haven-alerts.yml").read_text()
    names = sorted(set(re.findall(r'"alert": "(\w+)"', text)))
    assert len(names) >= 19
    tests = (DEPLOY / "prometheus" / "haven-alerts.test.yml").read_text()
    ops = (REPO / "docs" / "operations.md").read_text()
    for name in names:
        assert tests.count(f"alertname: {name}\n") == 2, name  # firing and quiet
        assert f"| `{name}` |" in ops, f"{name} missing from the alert table"
        assert f"**{name}**" in ops, f"{name} has no runbook entry"

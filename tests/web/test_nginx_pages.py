"""deploy/nginx/haven-pages.conf under a real nginx: same headers as relay/pages.py.

nginx comes from Debian's package (``./scripts/test`` installs it when missing); a
missing nginx fails loudly. The run is bounded (``fail_after``), never timed.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from haven.relay.pages import security_headers
from tests.ops.test_deploy_tools import free_port, make_cert, run, tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RELAY_ORIGIN = "wss://relay.example.org"


def pages_config(tmp: Path, port: int) -> Path:
    cert, key, _ = make_cert(tmp)
    root = tmp / "pages"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>Haven</title>")
    (root / "visitor.html").write_text("<!doctype html><title>Visitor</title>")
    (root / "app.js").write_text("export {};")
    (root / "notes.py").write_text("secret")
    (root / ".env").write_text("secret")
    snippet = (DEPLOY / "nginx" / "haven-pages.conf").read_text()
    for old, new in [
        ("/etc/ssl/haven/fullchain.pem", str(cert)), ("/etc/ssl/haven/privkey.pem", str(key)),
        ("/var/log/nginx/", f"{tmp}/"), ("/srv/haven/pages", str(root)),
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"), ("listen [::]:443 ssl;", ""),
    ]:  # fmt: skip
        assert old in snippet, old
        snippet = snippet.replace(old, new)
    (tmp / "pages.conf").write_text(snippet)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log;\nevents {{}}\nhttp {{\n"
        f"  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n"
        f"  scgi_temp_path {tmp}/scgi;\n  include {tmp}/pages.conf;\n}}\n"
    )
    path = tmp / "nginx.conf"
    path.write_text(main)
    return path


def fetch(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_nginx_accepts_the_pages_snippet(tmp_path: Path) -> None:
    conf = pages_config(tmp_path, free_port())
    run(tool("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf))


def test_nginx_serves_the_pages_with_the_relays_headers(tmp_path: Path) -> None:
    port = free_port()
    conf = pages_config(tmp_path, port)
    proc = subprocess.Popen(
        [tool("nginx"), "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # a safety bound, not a timing assertion
        while True:
            try:
                status, headers, body = fetch(port, "GET", "/visitor.html")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.1)
        assert status == 200
        assert b"Visitor" in body
        expected = {k.decode(): v.decode() for k, v in security_headers(RELAY_ORIGIN)}
        for name, value in expected.items():
            assert headers.get(name) == value, name
        assert "set-cookie" not in headers
        assert headers["content-type"].startswith("text/html")
        assert fetch(port, "GET", "/app.js")[1]["content-type"].startswith("text/javascript")
        status, head_headers, empty = fetch(port, "HEAD", "/")
        assert status == 200
        assert empty == b""
        assert head_headers["cache-control"] == "no-store"
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = fetch(port, method, "/visitor.html")
            assert status == 405, method
            assert headers["cache-control"] == "no-store"
        for path in ("/notes.py", "/.env", "/missing.html", "/../etc/passwd"):
            status, headers, body = fetch(port, "GET", path)
            assert status in (400, 404), path
            assert b"secret" not in body
            assert headers["content-security-policy"] == expected["content-security-policy"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()

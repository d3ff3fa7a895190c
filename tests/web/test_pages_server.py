"""The page server (relay/pages.py) over a real relay on loopback: headers, methods, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from haven.relay.server import RelayInfo, b64url
from tests.conftest import start_relay

HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


async def request(url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` to the pages listener; return status, headers, body (until close)."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(raw)
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in headers or name.lower() == "set-cookie"
        headers[name.lower()] = value.strip()
    return status, headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: localhost\r\n\r\n".encode()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>Haven</title>")
    (root / "visitor.html").write_text("<!doctype html><title>Visitor</title>")
    (root / "assets" / "visitor.js").write_text("export {};")
    (root / "notes.py").write_text("secret = 1")
    (root / ".hidden.html").write_text("hidden")
    (tmp_path / "outside.html").write_text("outside the root")
    (root / "link.html").symlink_to(tmp_path / "outside.html")
    return root


async def start(nursery: trio.Nursery, root: Path) -> RelayInfo:
    info = await start_relay(
        nursery, pages_port=0, pages_dir=root, quick_exit_url="http://127.0.0.1:9/exit"
    )
    assert info.pages_url is not None
    return info


async def test_pages_served_with_security_headers(nursery: trio.Nursery, site: Path) -> None:
    info = await start(nursery, site)
    assert info.pages_url is not None
    port = info.url.rsplit(":", 1)[1]
    for path, ctype in [("/", "text/html"), ("/visitor.html", "text/html"),
                        ("/assets/visitor.js", "text/javascript")]:  # fmt: skip
        status, headers, body = await request(info.pages_url, get(path))
        assert status == 200, path
        assert headers["content-type"].startswith(ctype)
        for name, value in HEADERS.items():
            assert headers[name] == value
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert f"connect-src 'self' ws://127.0.0.1:{port};" in csp
        parts = ("script-src 'self'", "style-src 'self'", "base-uri 'none'",
                 "form-action 'none'", "frame-ancestors 'none'", "worker-src 'self'")  # fmt: skip
        for part in parts:
            assert part in csp
        assert "unsafe" not in csp
        assert "permissions-policy" in headers
        assert "set-cookie" not in headers
        assert int(headers["content-length"]) == len(body)
    status, _, body = await request(info.pages_url, get("/visitor.html?x=1"))
    assert status == 200
    assert b"Visitor" in body


async def test_config_json_names_this_relay(nursery: trio.Nursery, site: Path) -> None:
    info = await start(nursery, site)
    assert info.pages_url is not None
    status, headers, body = await request(info.pages_url, get("/config.json"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "relay_url": info.url,
        "relay_key": b64url(info.public_key),
        "quick_exit_url": "http://127.0.0.1:9/exit",
    }
    assert headers["cache-control"] == "no-store"


async def test_head_has_headers_without_body_and_relay_survives(
    nursery: trio.Nursery, site: Path
) -> None:
    """HEAD used to crash the metrics listener: here it is answered, and all keeps working."""
    info = await start(nursery, site)
    assert info.pages_url is not None
    _, got, body = await request(info.pages_url, get("/visitor.html"))
    status, headers, empty = await request(info.pages_url, get("/visitor.html", "HEAD"))
    assert status == 200
    assert empty == b""
    assert headers["content-length"] == str(len(body))
    assert headers["content-security-policy"] == got["content-security-policy"]
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = await request(info.pages_url, get("/visitor.html", method))
        assert status == 405
        assert headers["allow"] == "GET, HEAD"
        assert headers["cache-control"] == "no-store"
    status, _, _ = await request(info.pages_url, b"\x16\x03\x01garbage\r\n\r\n")
    assert status == 400
    status, _, _ = await request(info.pages_url, get("/"))
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.html", "/assets/../../outside.html", "/%2e%2e/outside.html",
        "/assets/%2e%2e/visitor.html", "/..%2foutside.html", "/notes.py", "/.hidden.html",
        "/link.html", "/missing.html", "/assets", "/assets/", "//etc/passwd",
        "/assets\\visitor.js", "http://evil/visitor.html", "*",
    ],
)
async def test_nothing_outside_the_allow_list(
    nursery: trio.Nursery, site: Path, path: str
) -> None:
    info = await start(nursery, site)
    assert info.pages_url is not None
    status, headers, body = await request(info.pages_url, get(path))
    assert status in (400, 404), path
    assert b"outside" not in body
    assert b"secret" not in body
    if status == 404:
        assert headers["cache-control"] == "no-store"


async def test_pages_off_by_default(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery)
    assert info.pages_url is None


def test_pages_settings_are_checked() -> None:
    from haven.relay.config import ConfigError, load

    with pytest.raises(ConfigError, match="pages_dir"):
        load({"pages_port": 0}, env={})
    with pytest.raises(ConfigError, match="quick_exit_url"):
        load({"quick_exit_url": "javascript:alert(1)"}, env={})
    assert load({"pages_port": "8080", "pages_dir": "web/dist"}, env={}).pages_port == 8080

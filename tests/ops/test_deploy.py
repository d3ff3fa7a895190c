"""The deploy/ artefacts: every metric the Grafana dashboard and the Prometheus alert
rules reference exists on a live relay's /metrics (with the labels they select on);
the proxies never forward client addresses; the systemd unit keeps RAM-only promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import trio

from tests.conftest import start_relay

from .helpers import Series, scrape

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b((?:haven|process)_[a-z_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def _alert_rules() -> list[dict[str, Any]]:
    text = (DEPLOY / "prometheus" / "haven-alerts.yml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    data = json.loads(body)  # JSON-compatible YAML flow style
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    data = json.loads((DEPLOY / "grafana" / "haven-dashboard.json").read_text())
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    exprs: list[str] = []
    for panel in data["panels"]:
        assert panel["targets"], panel["title"]
        exprs.extend(target["expr"] for target in panel["targets"])
    return exprs


def _check_expr(expr: str, series: Series) -> int:
    """Every metric in ``expr`` exists, with every label it matches on; returns how many."""
    found = 0
    for name, selector in METRIC.findall(expr):
        labels = [ls for sample, ls in series if sample == name]
        assert labels, f"{name} (in {expr!r}) is not exported by the relay"
        found += 1
        for key, op, value in MATCHER.findall(selector or ""):
            if key in ("job", "instance"):
                continue  # added by Prometheus at scrape time
            values = {v for ls in labels for k, v in ls if k == key}
            assert values, f"{name} has no label {key!r} (in {expr!r})"
            if op == "=":
                assert value in values, f"{name}{{{key}={value!r}}} never exists"
    return found


async def test_every_metric_in_dashboard_and_alerts_exists(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, extra={"queues": [{"name": "helpline"}]})
    assert info.metrics_url is not None
    _, series, _ = await scrape(info.metrics_url)

    rules = _alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        if rule["alert"] not in ("HavenRelayDown", "HavenRelayAbsent"):  # on Prometheus' own ``up``
            assert _check_expr(rule["expr"], series) >= 1, rule["alert"]
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    used = 0
    for expr in exprs:
        used += _check_expr(expr, series)
    assert used >= len(exprs)


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_proxies_never_forward_client_addresses_and_set_websocket_timeouts() -> None:
    nginx = _without_comments((DEPLOY / "nginx" / "haven.conf").read_text())
    haproxy = _without_comments((DEPLOY / "haproxy" / "haproxy.cfg").read_text())
    for config in (nginx, haproxy):
        lowered = config.lower()
        for leak in ("$remote_addr", "$proxy_add_x_forwarded_for", "$realip", "proxy_protocol",
                     "send-proxy", "option forwardfor", "real_ip_header", "%ci"):
            assert leak not in lowered, leak
    # nginx clears what a client could forge and logs nothing about clients.
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        assert f'proxy_set_header {header} "";' in nginx
        assert f"http-request del-header {header}" in haproxy
    assert "access_log off;" in nginx
    assert re.search(r"proxy_read_timeout\s+\d+s;", nginx)
    assert re.search(r"proxy_send_timeout\s+\d+s;", nginx)
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert re.search(r"timeout tunnel\s+\d+s", haproxy)
    assert "no log" in haproxy
    assert "ssl" in nginx
    assert "ssl crt" in haproxy


def test_systemd_unit_is_hardened() -> None:
    unit = _without_comments((DEPLOY / "haven.service").read_text())
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("["):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    expected = {
        "MemorySwapMax": "0", "LimitCORE": "0", "ProtectSystem": "strict",
        "PrivateTmp": "yes", "NoNewPrivileges": "yes", "ProtectHome": "yes",
        "DynamicUser": "yes", "KillSignal": "SIGTERM",
    }  # fmt: skip
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert "serve" in settings["ExecStart"][0]
    assert not any(k in settings for k in ("StateDirectory", "LogsDirectory", "CacheDirectory"))


def test_dashboard_selects_by_relay_and_marks_alert_thresholds() -> None:
    """One saturated relay must be visible: every query honours the instance variable,
    and the per-relay CPU, memory and loop-lag panels carry the alerts' thresholds."""
    data = json.loads((DEPLOY / "grafana" / "haven-dashboard.json").read_text())
    names = [v["name"] for v in data["templating"]["list"]]
    assert "instance" in names
    for expr in _dashboard_exprs():
        assert 'instance=~"$instance"' in expr, expr
    panels = {p["title"]: p for p in data["panels"]}
    for title, threshold in (
        ("Memory (RSS) per relay", 1.5e9),
        ("Event-loop lag per relay", 0.25),
        ("Relay latency (received to written)", 0.05),
    ):
        steps = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == threshold, title
        assert all("by (instance" in t["expr"] for t in panels[title]["targets"]) or (
            title.startswith("Relay latency")
        )

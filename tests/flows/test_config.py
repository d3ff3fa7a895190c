"""The flows' configuration: the example file loads, and bad entries are named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from haven.relay import flows
from haven.relay.config import Config, ConfigError, load
from haven.relay.flows.settings import parse
from haven.relay.hub import Hub

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "haven.toml"
GOOD_KEY = "0Hp6hhqRtaekAdZVGYTExHUD82jxaUViOfm7Tc5wl_I"


def test_the_example_config_loads_and_installs() -> None:
    config = load({}, env={}, config_file=EXAMPLE)
    assert config.log_format == "json"
    assert config.port == 8765
    settings = parse(config)
    assert sorted(i.name for i in settings.issuers.values()) == ["central", "riverside-chapter"]
    local = next(i for i in settings.issuers.values() if i.name == "riverside-chapter")
    assert local.roles == ("moderator", "responder")
    assert len(local.revoked) == 1
    assert list(settings.queues) == ["helpline", "male-survivors"]
    assert settings.queues["helpline"].max_length == 200
    sunday, friday = settings.rooms
    assert (sunday.days, sunday.start, sunday.end) == ((6,), dt.time(13), dt.time(15))
    assert sunday.premoderated
    assert sunday.rules
    assert "crisis button" in sunday.rules
    assert not friday.listed
    assert friday.code == "5aet-zgvr-7j11-fjm3-n8m8-wa5k-awcn"
    assert settings.moderation.pending_ttl == 600
    # Sunday 2024-11-03 17:00 UTC
    hub = Hub(config, 0.0, extend=flows.extension(config, wall_now=lambda: 1_730_653_200.0))
    installed = flows.installed(hub)
    assert installed.schedules.by_code[friday.code].definition == friday
    with pytest.raises(TypeError):
        flows.installed(Hub(config, 0.0))  # a hub built without the flows


def base(**sections: Any) -> Config:
    extra: dict[str, Any] = {"issuers": [{"name": "central", "public_key": GOOD_KEY}]}
    extra.update(sections)
    return Config(port=0, metrics_port=None, extra=extra)


ROOM = {"name": "r", "topic": "t", "days": ["sun"], "start": "13:00", "end": "15:00",
        "timezone": "UTC"}  # fmt: skip


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"issuers": {"name": "x"}}, r"\[\[issuers\]\] must be an array"),
        ({"issuers": [{"name": "a", "public_key": "short"}]}, r"entry 1 \('a'\).*public_key"),
        ({"issuers": [{"name": "a", "public_key": GOOD_KEY},
                      {"name": "b", "public_key": GOOD_KEY}]}, "listed twice"),
        ({"issuers": [{"name": "a", "public_key": GOOD_KEY, "roles": ["admin"]}]}, "roles"),
        ({"issuers": [{"name": "a", "public_key": GOOD_KEY, "revoked": ["zz"]}]}, "revoked"),
        ({"queues": [{"name": "Help Line"}]}, r"\[\[queues\]\] entry 1.*'name'"),
        ({"queues": [{"name": "q"}, {"name": "q"}]}, r"entry 2 \('q'\): duplicate"),
        ({"queues": [{"name": "q", "max_length": 0}]}, "max_length"),
        ({"queues": [{"name": "q", "size": 3}]}, "unknown keys size"),
        ({"rooms": [{**ROOM, "timezone": "Mars/Olympus"}]}, r"\('r'\): unknown time zone"),
        ({"rooms": [{**ROOM, "days": ["someday"]}]}, "not a weekday"),
        ({"rooms": [{**ROOM, "start": "1pm"}]}, "'start' must be a time"),
        ({"rooms": [{**ROOM, "listed": False}]}, "link-only room needs a fixed 'code'"),
        ({"rooms": [{**ROOM, "code": "not-a-code"}]}, "not a valid room code"),
        ({"rooms": [{k: v for k, v in ROOM.items() if k != "topic"}]}, "missing topic"),
        ({"rooms": [{**ROOM, "max_members": 1}]}, "max_members"),
        ({"moderation": {"pending_ttl": 0}}, r"\[moderation\]: 'pending_ttl'"),
        ({"moderation": {"max_pending": 2, "max_pending_per_author": 3}}, "per_author"),
    ],
)
def test_bad_flow_config_is_refused_naming_the_entry(
    sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(base(**sections))


def test_a_relay_refuses_to_start_with_bad_flow_config(tmp_path: Path) -> None:
    path = tmp_path / "haven.toml"
    path.write_text('[[queues]]\nname = "helpline"\nmax_length = -1\n')
    config = load({}, env={}, config_file=path)
    with pytest.raises(ConfigError, match="max_length"):
        Hub(config, 0.0, extend=flows.extension(config))

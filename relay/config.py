"""Relay configuration: one frozen dataclass, units in the names, defaults that work.

Values come from, in order of precedence: command-line flags, ``HAVEN_*`` environment
variables, a TOML file (``--config``; keys under ``[relay]``), then the defaults below.
Every field that bounds a resource a client can make the relay hold is listed in
``docs/operations.md`` with its default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECONDS = 1.0
MINUTES = 60 * SECONDS
KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything the relay needs to run. Immutable once the relay starts."""

    # Listeners.
    host: str = "127.0.0.1"
    port: int = 8765  #: 0 picks a free port (the real one is printed)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464  #: None disables the metrics listener
    key_file: Path | None = None  #: static private key; None generates one in memory

    # Connections.
    max_connections: int = 10_000
    #: Sockets still in the WebSocket upgrade or Noise handshake; past it the oldest is
    #: dropped to make room (they do not count toward max_connections).
    max_pending_handshakes: int = 256
    handshake_timeout: float = 10 * SECONDS  #: WebSocket upgrade plus Noise handshake
    idle_timeout: float = 120 * SECONDS  #: close after this long with no inbound frame
    ping_interval: float = 30 * SECONDS  #: WebSocket ping when the peer is quiet
    max_message_bytes: int = 65535  #: largest WebSocket message (one Noise message)
    outbound_backlog_bytes: int = 1 * MIB  #: queued bytes before a slow consumer is dropped
    rate_per_s: float = 50.0  #: sustained requests per second per connection
    rate_burst: int = 100  #: token bucket size per connection
    close_timeout: float = 2 * SECONDS  #: time allowed to flush a closing frame

    # Rooms.
    max_rooms: int = 10_000  #: rooms open on the relay at once
    max_rooms_per_connection: int = 16  #: seats one connection may hold
    max_members: int = 50  #: default member cap of a group room
    max_members_limit: int = 1000  #: largest cap a creator may ask for
    max_body_bytes: int = 16 * KIB
    room_idle_ttl: float = 60 * MINUTES  #: a room with no traffic for this long ends
    room_hard_ttl: float = 24 * 60 * MINUTES  #: no room lives longer than this
    typing_interval: float = 2 * SECONDS  #: at most one typing event per seat per interval

    # Resume.
    resume_grace: float = 60 * SECONDS  #: a dropped seat is held this long
    resume_buffer: int = 256  #: room events kept per room for resume
    resume_private_buffer: int = 64  #: private events kept per held seat
    resume_buffer_bytes: int = 1 * MIB  #: bytes of events kept per room for resume
    #: Sustained bytes per second of sequenced traffic one room may carry (each message
    #: counts its body plus 256 bytes of framing), so that a member reading at this rate
    #: never falls further behind than the ring holds (docs/protocol.md section 8).
    room_rate_bytes_per_s: int = 24 * KIB
    room_burst_bytes: int = 256 * KIB  #: bytes a room may carry in a burst above that rate

    # Admission control (relay/admission.py; the curve is in docs/operations.md).
    handshake_rate_per_s: float = 200.0  #: new handshakes/s before 4402 SERVER_FULL
    handshake_burst: int = 400  #: handshakes allowed in a burst above that rate
    pow_start_load: float = 0.5  #: load (fraction of capacity) where proof of work starts
    pow_min_difficulty: int = 10  #: bits asked as soon as load reaches pow_start_load
    pow_max_difficulty: int = 20  #: bits asked at full load (about a million hashes)
    pow_expensive_per_s: float = 20.0  #: expensive requests/s that count as full load
    pow_cooldown: float = 30 * SECONDS  #: calm time before the difficulty falls again

    # Memory.
    #: Client-held state the relay keeps at most (rings, buffers, pending items, per
    #: object costs; relay/budget.py): near it new state is refused (502 RELAY_BUSY),
    #: over it the heaviest holders are shed. Keep it well under the process's limit.
    memory_budget_bytes: int = 1024 * MIB
    mlock: bool = False  #: lock all memory (mlockall) so nothing is ever swapped out

    # Shutdown.
    drain_grace: float = 10 * SECONDS  #: time clients get to leave after ``draining``
    drain_retry_after: int = 5  #: seconds clients are told to wait before reconnecting

    # Logging.
    log_level: str = "INFO"
    log_format: str = "plain"  #: "plain" or "json"

    # Role tokens.
    #: This deployment's name; a token is accepted only if its ``aud`` equals it (a
    #: relay without one accepts only tokens without an audience).
    token_audience: str | None = None

    # Front-end pages (relay/pages.py): a static file server on its own listener.
    pages_host: str = "127.0.0.1"
    pages_port: int | None = None  #: None disables the pages listener
    #: Directory of the built pages (``web/dist``); required when pages_port is set.
    pages_dir: Path | None = None
    #: Where Quick Exit leaves to (``location.replace``): a neutral, everyday address.
    quick_exit_url: str = "https://www.wikipedia.org/"

    # Cluster (cluster/link.py; docs/operations.md, "Cluster"). Without ``cluster`` the
    # relay is one process and none of these is used.
    #: NATS servers, comma-separated: ``nats://host:port`` or ``tls://host:port``.
    cluster: str | None = None
    cluster_key: Path | None = None  #: the cluster key file (``haven keygen --cluster``)
    nats_user: str | None = None  #: NATS user name (with ``nats_password_file``)
    nats_password_file: Path | None = None  #: file holding the NATS password (mode 0600)
    nats_ca_file: Path | None = None  #: CA bundle that verifies the NATS servers' TLS

    # Extra sections of the TOML file (queues, schedules, issuers) kept for the flows.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


#: Fields that are not plain scalar settings (not settable by flag or env).
_NOT_SCALAR = {"extra"}


def scalar_fields() -> list[dataclasses.Field[Any]]:
    """The settings that may come from flags, environment variables or TOML."""
    return [f for f in dataclasses.fields(Config) if f.name not in _NOT_SCALAR]


def _convert(f: dataclasses.Field[Any], value: Any) -> Any:
    """Convert a text or TOML value to the field's type, with a clear error."""
    tp = str(f.type)
    try:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            if "None" in tp:
                return None
            raise ValueError("a value is required")
        if tp == "bool":
            return _boolean(value)
        if tp.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"expected a whole number, got {value!r}")
            return int(value)
        if tp.startswith("float"):
            return float(value)
        if tp.startswith("Path"):
            return Path(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {f.name!r}: {exc}") from None


def _boolean(value: Any) -> bool:
    """A flag's value: TOML booleans, or the usual words from the environment."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting."""


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Build a ``Config`` from flags > ``HAVEN_*`` env > TOML ``[relay]`` > defaults."""
    flags = flags or {}
    env = os.environ if env is None else env
    toml: dict[str, Any] = {}
    if config_file is not None:
        try:
            toml = tomllib.loads(config_file.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file: {exc}") from None
    relay_section = toml.get("relay", {})
    if not isinstance(relay_section, dict):
        raise ConfigError("[relay] must be a table")
    known = {f.name for f in scalar_fields()}
    unknown = set(relay_section) - known
    if unknown:
        raise ConfigError(f"unknown settings in [relay]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for f in scalar_fields():
        env_name = "HAVEN_" + f.name.upper()
        if flags.get(f.name) is not None:
            values[f.name] = _convert(f, flags[f.name])
        elif env_name in env:
            values[f.name] = _convert(f, env[env_name])
        elif f.name in relay_section:
            values[f.name] = _convert(f, relay_section[f.name])
    extra = {k: v for k, v in toml.items() if k != "relay"}
    config = Config(**values, extra=extra)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse settings that cannot work, naming the setting."""
    positive = [
        "max_connections", "max_pending_handshakes", "handshake_timeout", "idle_timeout",
        "ping_interval",
        "max_message_bytes", "outbound_backlog_bytes", "rate_per_s", "rate_burst",
        "max_rooms", "max_rooms_per_connection", "max_members", "max_members_limit",
        "max_body_bytes", "room_idle_ttl", "room_hard_ttl", "resume_buffer",
        "resume_private_buffer", "resume_buffer_bytes", "room_rate_bytes_per_s",
        "room_burst_bytes", "memory_budget_bytes", "close_timeout", "handshake_rate_per_s",
        "handshake_burst",
        "handshake_burst",
        "pow_start_load", "pow_expensive_per_s", "pow_cooldown",
    ]  # fmt: skip
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive")
    if not 0 <= config.port <= 65535:
        raise ConfigError("setting 'port' must be 0..65535")
    if config.max_message_bytes > 65535:
        raise ConfigError("setting 'max_message_bytes' cannot exceed 65535 (Noise limit)")
    if config.max_body_bytes > 60 * KIB:
        raise ConfigError("setting 'max_body_bytes' cannot exceed 61440")
    if config.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("setting 'log_level' must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    if config.log_format not in ("plain", "json"):
        raise ConfigError("setting 'log_format' must be 'plain' or 'json'")
    if config.max_members > config.max_members_limit:
        raise ConfigError("setting 'max_members' exceeds 'max_members_limit'")
    for name in ("typing_interval", "drain_grace", "drain_retry_after"):
        if getattr(config, name) < 0:
            raise ConfigError(f"setting {name!r} must not be negative")
    if config.room_burst_bytes < config.max_body_bytes + 256:
        raise ConfigError("setting 'room_burst_bytes' must hold one largest message")
    if config.resume_buffer_bytes < config.room_burst_bytes + config.outbound_backlog_bytes // 4:
        raise ConfigError(
            "setting 'resume_buffer_bytes' must cover 'room_burst_bytes' plus a quarter of "
            "'outbound_backlog_bytes' (what a member may be behind; see docs/operations.md)"
        )
    if config.rate_per_s < 1:
        raise ConfigError("setting 'rate_per_s' must be at least 1")
    if not 0 <= config.pow_min_difficulty <= config.pow_max_difficulty <= 32:
        raise ConfigError("settings 'pow_min_difficulty' <= 'pow_max_difficulty' <= 32")
    if not 0 < config.pow_start_load < 1:
        raise ConfigError("setting 'pow_start_load' must be between 0 and 1")
    _validate_pages(config)
    _validate_cluster(config)


def _validate_cluster(config: Config) -> None:
    """A cluster needs its key; the server list must parse (checked again at start)."""
    if config.cluster is None:
        for name in ("cluster_key", "nats_user", "nats_password_file", "nats_ca_file"):
            if getattr(config, name) is not None:
                raise ConfigError(f"setting {name!r} needs 'cluster' (the NATS servers)")
        return
    if config.cluster_key is None:
        raise ConfigError("setting 'cluster' needs 'cluster_key' (haven keygen --cluster)")
    from haven.cluster.nats import Server

    for url in config.cluster.split(","):
        try:
            Server.parse(url.strip())
        except ValueError as exc:
            raise ConfigError(f"setting 'cluster': {exc}") from None
    if (config.nats_user is None) != (config.nats_password_file is None):
        raise ConfigError("settings 'nats_user' and 'nats_password_file' go together")


def _validate_pages(config: Config) -> None:
    """The pages listener needs a directory; Quick Exit must leave to a web address."""
    if config.pages_port is not None:
        if not 0 <= config.pages_port <= 65535:
            raise ConfigError("setting 'pages_port' must be 0..65535")
        if config.pages_dir is None:
            raise ConfigError("setting 'pages_dir' is required when 'pages_port' is set")
    if not config.quick_exit_url.startswith(("https://", "http://")):
        raise ConfigError("setting 'quick_exit_url' must be an http(s) address")

"""Units and meanings of every setting, for ``haven serve --help``.

Kept word for word in step with the settings table of docs/operations.md (a test
compares them), so the command line and the operations guide never disagree.
"""

from __future__ import annotations

#: setting -> (unit, what it means); markdown stripped.
SETTINGS_HELP: dict[str, tuple[str, str]] = {
    'host': (
        'address',
        'interface the WebSocket listener binds; 0.0.0.0 or :: for all',
    ),
    'port': (
        'TCP port',
        'WebSocket listener port; 0 picks a free port (printed in the first line)',
    ),
    'metrics_host': (
        'address',
        'interface of the metrics and health listener; keep it private',
    ),
    'metrics_port': (
        'TCP port',
        'metrics and health listener port; none disables the listener',
    ),
    'key_file': (
        'path',
        "the relay's static private key (from haven keygen); unset: a fresh key in "
        'memory on every start',
    ),
    'max_connections': (
        'connections',
        'open client sessions (handshake done); one more is closed with 4402 SERVER_FULL '
        'after the upgrade',
    ),
    'max_pending_handshakes': (
        'sockets',
        'TCP connections still in the WebSocket upgrade or Noise handshake (they do not '
        'count toward max_connections); one more makes the oldest of them be dropped, so '
        'idle sockets cannot keep real clients out',
    ),
    'handshake_timeout': (
        'seconds',
        'time from TCP accept to the end of the WebSocket upgrade and Noise message 1; '
        'then the TCP connection is dropped',
    ),
    'idle_timeout': (
        'seconds',
        'inbound silence (no bytes at all, pongs included) before a connection is closed '
        'with 4408 (welcome)',
    ),
    'ping_interval': (
        'seconds',
        'inbound silence after which the relay sends a WebSocket ping, and the interval '
        'between pings',
    ),
    'max_message_bytes': (
        'bytes',
        'largest WebSocket message, fragments included; over it: close 1009. At most '
        '65535',
    ),
    'outbound_backlog_bytes': (
        'bytes',
        'bytes queued to one connection; over it the connection is dropped as a slow '
        'consumer (4406), never slowing its rooms. From a quarter of it on, the '
        'connection is congested: room events are no longer pushed to it but pulled from '
        "the room's ring as its socket drains (docs/protocol.md section 8.2)",
    ),
    'rate_per_s': (
        'requests/s',
        'sustained request rate per connection (token bucket refill) (welcome, rounded '
        'down)',
    ),
    'rate_burst': (
        'requests',
        'token bucket size per connection (welcome)',
    ),
    'close_timeout': (
        'seconds',
        'time allowed to flush a close frame and the last queued bytes before the socket '
        'is dropped',
    ),
    'max_rooms': (
        'rooms',
        'rooms open on the relay at once; beyond it create_room gets 401 TOO_MANY_ROOMS',
    ),
    'max_rooms_per_connection': (
        'seats',
        'seats one connection may hold (welcome max_rooms)',
    ),
    'max_members': (
        'seats',
        'member cap of a group room whose creator did not ask for one (welcome)',
    ),
    'max_members_limit': (
        'seats',
        'largest member cap a creator may ask for (create_room.max_members)',
    ),
    'max_body_bytes': (
        'bytes',
        'largest message body (welcome max_body); at most 61440',
    ),
    'room_idle_ttl': (
        'seconds',
        'a room without a message or join for this long ends; also the most a creator '
        'may ask for',
    ),
    'room_hard_ttl': (
        'seconds',
        'no room lives longer than this; also the most a creator may ask for',
    ),
    'typing_interval': (
        'seconds',
        'at most one typing event per seat per interval',
    ),
    'resume_grace': (
        'seconds',
        "how long a dropped connection's seats are held for resume (welcome)",
    ),
    'resume_buffer': (
        'events per room',
        'sequenced room events kept for resuming seats (one shared ring per room); a '
        'seat that missed more cannot resume (welcome)',
    ),
    'resume_private_buffer': (
        'events per held seat',
        'private events (moderation notices and the like) kept for a held seat, or for a '
        'seat that is catching up',
    ),
    'resume_buffer_bytes': (
        'bytes per room',
        'the ring is also bounded in bytes (each event counts its body plus 256); must '
        'be at least room_burst_bytes + outbound_backlog_bytes / 4',
    ),
    'room_rate_bytes_per_s': (
        'bytes/s per room',
        'sustained sequenced traffic one room may carry (each send counts its body plus '
        '256); over it the sender gets 400 RATE_LIMITED with retry_after. A member '
        'reading at least this fast never loses its seat',
    ),
    'room_burst_bytes': (
        'bytes per room',
        'what a room may carry in a burst above room_rate_bytes_per_s; at least one '
        'largest message',
    ),
    'handshake_rate_per_s': (
        'handshakes/s',
        'new handshakes per second across the relay (one global token bucket); beyond it '
        'a connection is closed with 4402 SERVER_FULL right after the WebSocket upgrade, '
        'before any Diffie-Hellman work; also the rate that counts as full load for '
        'proof of work',
    ),
    'handshake_burst': (
        'handshakes',
        'handshakes allowed in a burst above handshake_rate_per_s',
    ),
    'pow_start_load': (
        'fraction',
        'load (the largest of connections / max_connections, handshakes/s / '
        'handshake_rate_per_s, expensive requests/s / pow_expensive_per_s, and the fill '
        "of the fullest intake queue's normal lane) at which proof of work starts; below "
        'it none is asked. Between 0 and 1',
    ),
    'pow_min_difficulty': (
        'bits',
        'proof-of-work difficulty as soon as the load reaches pow_start_load (about a '
        'thousand hashes)',
    ),
    'pow_max_difficulty': (
        'bits',
        'difficulty at full load (about a million hashes); the difficulty rises linearly '
        'in between. At most 32',
    ),
    'pow_expensive_per_s': (
        'requests/s',
        'rate of state-creating requests (create_room, request_help, handoff_accept) '
        'that counts as full load',
    ),
    'pow_cooldown': (
        'seconds',
        'the difficulty rises at once but falls only after the load has stayed lower '
        'this long',
    ),
    'memory_budget_bytes': (
        'bytes',
        'client-held state the relay keeps at most (see "Memory" below): over 90 % of it '
        'new state is refused with 502 RELAY_BUSY, over it the heaviest holders are shed',
    ),
    'mlock': (
        'boolean',
        "lock all the relay's memory (mlockall) so session data is never swapped to "
        'disk; true/false (also 1/0, yes/no, on/off from flags and the environment)',
    ),
    'drain_grace': (
        'seconds',
        'how long clients get to leave after the draining event before the relay closes '
        'them',
    ),
    'drain_retry_after': (
        'seconds',
        'the reconnect hint sent in the draining event',
    ),
    'log_level': (
        'level',
        'DEBUG, INFO, WARNING, ERROR',
    ),
    'log_format': (
        'format',
        'plain (human-readable lines) or json (one object per line)',
    ),
    'token_audience': (
        'name',
        "this deployment's name: a role token is accepted only if its audience (haven "
        'token issue --audience) equals it; without it only tokens with no audience are '
        'accepted, and haven serve logs a WARNING at start when issuers are configured',
    ),
    'pages_host': (
        'address',
        'address of the front-end pages listener (relay/pages.py; see "Front ends"); '
        'keep it on loopback and put a proxy in front, or serve the built pages from a '
        'static host',
    ),
    'pages_port': (
        'port',
        'port of the front-end pages listener; none disables it, 0 picks a free port; '
        'haven serve --demo uses 8080',
    ),
    'pages_dir': (
        'path',
        'directory of the built pages (web/dist, from npm run build:pages in web/); '
        'required when pages_port is set',
    ),
    'quick_exit_url': (
        'URL',
        "where the pages' Quick Exit leaves to (location.replace), given to them in "
        '/config.json: a neutral, everyday address',
    ),
    'cluster': (
        'URLs',
        'the NATS servers of the cluster, comma-separated (nats://HOST:PORT or '
        'tls://HOST:PORT); none runs one process alone (see "Cluster")',
    ),
    'cluster_key': (
        'path',
        'the cluster key file (haven keygen --cluster, mode 0600) every relay of the '
        'cluster shares: it seals all bus traffic; required with cluster',
    ),
    'nats_user': (
        'name',
        'NATS user name the relay connects as (with nats_password_file)',
    ),
    'nats_password_file': (
        'path',
        'file holding the NATS password (never a flag value: it would show in the process list)',
    ),
    'nats_ca_file': (
        'path',
        "CA bundle that verifies the NATS servers' TLS certificates (with tls:// servers)",
    ),
}


def plain(markdown: str) -> str:
    """A table cell of docs/operations.md as the command line shows it."""
    return markdown.replace("`", "").replace("*", "")


"""Drive the synchronous hub with the flows installed, without any network.

For unit tests of the flows' pure logic (queue ordering, ticket resume, the spoken-code
attempt bound): requests go straight into ``Hub.handle`` with an explicit ``now`` and
the deliveries are read back from ``Hub.out``.
"""

from __future__ import annotations

from typing import Any

from haven.protocol import messages as m
from haven.relay import flows
from haven.relay.config import Config
from haven.relay.hub import Hub, Peer

from .helpers import Operator

#: Sunday 2024-11-03 09:00 UTC, an arbitrary fixed wall-clock anchor.
WALL = 1_730_624_400.0


class Kit:
    """A hub with flows installed, plus request/reply helpers."""

    def __init__(
        self, operator: Operator, relay: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        """``relay``: relay settings (``Config`` fields); ``extra``: flow sections."""
        sections: dict[str, Any] = {
            "issuers": [operator.entry()],
            "queues": [{"name": "helpline", "max_length": 5}, {"name": "other"}],
        }
        sections.update(extra)
        self.operator = operator
        self.config = Config(port=0, metrics_port=None, extra=sections, **(relay or {}))
        self.hub = Hub(self.config, 0.0, extend=flows.extension(self.config, wall_now=lambda: WALL))
        self.now = 0.0
        self.ids: dict[Peer, int] = {}

    def peer(self, *roles: str, **scopes: Any) -> Peer:
        """A connected peer, authenticated with a token for each role in ``roles``."""
        peer = self.hub.connect(self.now)
        for role in roles:
            token = self.operator.token(role, now=WALL, **scopes)
            reply = self.call(peer, m.Auth, token=token.encode())
            assert isinstance(reply, m.Authed), reply
        return peer

    def send(self, peer: Peer, cls: type[Any], **fields: Any) -> int:
        rid = self.ids.get(peer, 0) + 1
        self.ids[peer] = rid
        self.hub.handle(peer, cls(id=rid, **fields), self.now)
        return rid

    def call(self, peer: Peer, cls: type[Any], **fields: Any) -> Any:
        """Send one request and return its reply (other deliveries stay in ``out``)."""
        rid = self.send(peer, cls, **fields)
        for i, (to, msg) in enumerate(self.hub.out):
            if to is peer and isinstance(msg, m.Reply) and msg.id == rid:
                del self.hub.out[i]
                return msg
        raise AssertionError(f"no reply to {cls.__name__}")

    def events(self, peer: Peer) -> list[Any]:
        """Take every pending delivery to ``peer`` out of ``hub.out``."""
        mine = [msg for to, msg in self.hub.out if to is peer]
        self.hub.out = [(to, msg) for to, msg in self.hub.out if to is not peer]
        return mine

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.hub.handle_timers(self.now)


def error_code(reply: Any) -> int:
    assert isinstance(reply, m.Error), reply
    return reply.code

"""Haven's wire protocol, pure and sans-IO: no sockets, no Trio, no clocks.

Modules: ``errors`` (error codes and exceptions), ``messages`` (the message catalogue),
``codec`` (msgpack envelopes with strict limits), ``noise`` (the Noise Protocol
Framework), ``frames`` (padding and transport encryption), ``codes`` (room codes and
spoken one-time codes), ``pow`` (the proof-of-work puzzle).
"""

PROTOCOL_VERSION = 1
#: WebSocket subprotocol naming the version; the Noise prologue is the same bytes.
SUBPROTOCOL = "haven.v1"
PROLOGUE = SUBPROTOCOL.encode("ascii")

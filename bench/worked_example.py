"""Print the worked example of docs/protocol.md: a handshake and two transport messages.

Run from the repository root::

    PYTHONPATH=. python -m bench.worked_example

Every private key and the proof-of-work seed are fixed constants, so the output is
deterministic (X25519, ChaCha20-Poly1305 and SHA-256 are deterministic given their
inputs). ``docs/protocol.md`` carries this output verbatim between the
``worked-example`` markers, and ``tests/protocol/test_worked_example.py`` regenerates it
and compares byte for byte, so the document cannot drift from the code.

Both sides of the handshake are run here (the client as NK initiator, the relay as NK
responder) and each side reads what the other wrote, so the example is known to be a
handshake that actually completes, not just bytes that look like one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from haven.protocol import PROLOGUE, PROTOCOL_VERSION, codec, codes, frames, noise
from haven.protocol import messages as m

# ---------------------------------------------------------------- fixed inputs

#: The relay's static X25519 private key (what ``haven keygen`` would write).
RELAY_STATIC_PRIVATE = "adf96a0b69b110591bb393b17e29b61f07f5b3389586473aa34774bcb4ebf950"
#: The client's ephemeral private key (normally fresh from the OS for every connection).
CLIENT_EPHEMERAL_PRIVATE = "20e40aa9fadc9898b6f9e954e39e1f7030c4465e03fe2e417a373456b0f39adf"
#: The relay's ephemeral private key (normally fresh for every connection).
RELAY_EPHEMERAL_PRIVATE = "bc6f065f0187540c40289bf3733f8ce82b1281c383094bf573e867cfe885228a"
#: The per-connection proof-of-work seed the relay puts in ``welcome``.
POW_SEED = "ad8fd96666ccae90f1cdfa2c2b28a3393c63f73cb0c99c75c3a5b6061fa493c2"
#: The 16 random bytes behind the example room's code.
ROOM_ID = "000102030405060708090a0b0c0d0e0f"
#: The body of the example ``send`` (opaque to the relay; here plain UTF-8).
BODY = b"hello"

#: The limits a relay with the default configuration announces (see relay.config).
DEFAULT_LIMITS = m.Limits(
    max_envelope=65517,
    max_body=16384,
    max_rooms=16,
    max_members=50,
    rate=50,
    burst=100,
    resume_grace=60,
    resume_buffer=256,
    idle_timeout=120,
)

#: Width of one hex line in the printed example (32 bytes).
HEX_WIDTH = 64


@dataclass(frozen=True, slots=True)
class Example:
    """Every value of the worked example, as bytes (or text), in the order printed."""

    values: tuple[tuple[str, bytes | str], ...]

    def get(self, label: str) -> bytes | str:
        """The value printed under ``label``."""
        for name, value in self.values:
            if name == label:
                return value
        raise KeyError(label)


def _key(hex_text: str) -> X25519PrivateKey:
    return noise.load_private(bytes.fromhex(hex_text))


def welcome_message() -> m.Welcome:
    """The ``welcome`` the example relay sends: default limits, fixed seed, no work."""
    return m.Welcome(
        version=PROTOCOL_VERSION,
        limits=DEFAULT_LIMITS,
        challenge=m.Challenge(seed=bytes.fromhex(POW_SEED), difficulty=0),
    )


def room_code() -> str:
    """The canonical code of the example room."""
    return codes.room_code_from_bytes(bytes.fromhex(ROOM_ID))


def build() -> Example:
    """Run the example handshake on both sides and one request/reply; collect the bytes."""
    relay_static = _key(RELAY_STATIC_PRIVATE)
    relay_public = noise.public_bytes(relay_static)
    client_e = _key(CLIENT_EPHEMERAL_PRIVATE)
    relay_e = _key(RELAY_EPHEMERAL_PRIVATE)

    client = noise.nk_initiator(relay_public, PROLOGUE, e=client_e)
    relay = noise.nk_responder(relay_static, PROLOGUE, e=relay_e)

    hello = codec.encode(m.Hello(versions=(PROTOCOL_VERSION,)))
    message1 = client.write_message(frames.pad(hello))
    if codec.decode_handshake(frames.unpad(relay.read_message(message1))) != m.Hello(
        versions=(PROTOCOL_VERSION,)
    ):
        raise AssertionError("the relay did not read the client's hello")

    welcome = codec.encode(welcome_message())
    message2 = relay.write_message(frames.pad(welcome))
    if codec.decode_handshake(frames.unpad(client.read_message(message2))) != welcome_message():
        raise AssertionError("the client did not read the relay's welcome")
    if client.handshake_hash != relay.handshake_hash:
        raise AssertionError("the two sides disagree on the handshake hash")

    client_transport = frames.Transport(*client.split())
    relay_transport = frames.Transport(*relay.split())

    code = room_code()
    request = codec.encode(m.Send(id=1, room=code, body=BODY))
    transport1 = client_transport.seal(request)
    if relay_transport.open(transport1) != request:
        raise AssertionError("the relay did not read the client's send")
    reply = codec.encode(m.Sent(id=1, room=code, seq=1))
    transport2 = relay_transport.seal(reply)
    if client_transport.open(transport2) != reply:
        raise AssertionError("the client did not read the relay's reply")

    return Example(
        (
            ("protocol name", noise.PROTOCOL_NAME),
            ("prologue", PROLOGUE),
            ("relay static private key", bytes.fromhex(RELAY_STATIC_PRIVATE)),
            ("relay static public key", relay_public),
            ("relay static public key, base64url", _b64url(relay_public)),
            ("client ephemeral private key", bytes.fromhex(CLIENT_EPHEMERAL_PRIVATE)),
            ("client ephemeral public key", noise.public_bytes(client_e)),
            ("relay ephemeral private key", bytes.fromhex(RELAY_EPHEMERAL_PRIVATE)),
            ("relay ephemeral public key", noise.public_bytes(relay_e)),
            ("hello envelope", hello),
            ("message 1 (client to relay)", message1),
            ("welcome envelope", welcome),
            ("message 2 (relay to client)", message2),
            ("handshake hash", client.handshake_hash),
            ("room code", code),
            ("send envelope", request),
            ("transport message 1 (client to relay, nonce 0)", transport1),
            ("sent envelope", reply),
            ("transport message 2 (relay to client, nonce 0)", transport2),
        )
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def render(example: Example | None = None) -> str:
    """The example as printed: ``label (N bytes):`` then indented hex, 32 bytes a line.

    Text values (names, codes, base64url) are printed on one indented line as they are.
    """
    example = example or build()
    lines: list[str] = []
    for label, value in example.values:
        if isinstance(value, str):
            lines.append(f"{label}:")
            lines.append(f"  {value}")
            continue
        lines.append(f"{label} ({len(value)} bytes):")
        text = value.hex()
        lines.extend(f"  {text[i : i + HEX_WIDTH]}" for i in range(0, len(text), HEX_WIDTH))
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the worked example."""
    print(render(), end="")


if __name__ == "__main__":
    main()

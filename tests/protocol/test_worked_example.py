"""The worked example in docs/protocol.md is exactly what the code produces.

Three independent checks, so that drift in the document, in ``bench/worked_example.py``
or in the protocol code is caught:

* the block in the document equals the script's output, byte for byte;
* the hex in the document, read on its own, is a handshake that the protocol code
  completes: the document's private keys give its public keys, its message 1 decrypts
  (relay side) to its hello envelope, its message 2 to its welcome, its transport
  messages to its envelopes, with its handshake hash;
* the example's ``welcome`` is what a real relay with the default configuration sends.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bench import worked_example as wx
from haven.protocol import PROLOGUE, codec, frames, noise
from haven.protocol import messages as m
from haven.protocol.errors import FrameError
from haven.relay.config import Config
from haven.relay.server import Relay

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BEGIN = "<!-- worked-example:begin -->"
END = "<!-- worked-example:end -->"
#: Hex digits of a value changed by the drift test.
HEX_PREFIX = 16
_LABEL = re.compile(r"^(?P<label>[^ ].*?)(?: \((?P<size>\d+) bytes\))?:$")


def doc_block() -> str:
    """The text between the worked-example markers, without the code fence."""
    text = DOC.read_text("utf-8")
    assert text.count(BEGIN) == 1, "docs/protocol.md needs exactly one worked-example block"
    assert text.count(END) == 1
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    lines = block.splitlines()
    assert lines[0].startswith("```"), "the worked example must be a fenced code block"
    assert lines[-1] == "```"
    return "\n".join(lines[1:-1]) + "\n"


def parse(block: str) -> dict[str, bytes | str]:
    """``label (N bytes):`` + indented hex lines -> bytes; ``label:`` + one line -> text."""
    values: dict[str, bytes | str] = {}
    label: str | None = None
    size: int | None = None
    chunks: list[str] = []

    def finish() -> None:
        if label is None:
            return
        assert chunks, f"{label!r} has no value"
        if size is None:
            assert len(chunks) == 1, f"{label!r} is text and must be one line"
            values[label] = chunks[0]
        else:
            data = bytes.fromhex("".join(chunks))
            assert len(data) == size, f"{label!r}: {len(data)} bytes, label says {size}"
            values[label] = data

    for line in block.splitlines():
        if line.startswith("  "):
            assert label is not None, "value before any label"
            chunks.append(line.strip())
            continue
        match = _LABEL.match(line)
        assert match, f"unparseable line in the worked example: {line!r}"
        finish()
        assert match["label"] not in values, f"duplicate label {match['label']!r}"
        label = match["label"]
        size = int(match["size"]) if match["size"] else None
        chunks = []
    finish()
    return values


@pytest.fixture(scope="module")
def doc_values() -> dict[str, bytes | str]:
    return parse(doc_block())


def _bytes(values: dict[str, bytes | str], label: str) -> bytes:
    value = values[label]
    assert isinstance(value, bytes), f"{label!r} should be hex"
    return value


def test_document_block_is_the_script_output() -> None:
    assert doc_block() == wx.render(), (
        "docs/protocol.md's worked example differs from `python -m bench.worked_example`; "
        "paste the new output between the markers"
    )


def test_every_value_matches_byte_for_byte(doc_values: dict[str, bytes | str]) -> None:
    generated = dict(wx.build().values)
    assert list(doc_values) == list(generated), "labels differ from the script's"
    for label, value in generated.items():
        assert doc_values[label] == value, f"{label!r} in docs/protocol.md is stale"


def test_parser_reads_every_value_and_refuses_a_changed_one() -> None:
    block = doc_block()
    values = parse(block)
    assert len(values) == len(wx.build().values) >= 19
    # One flipped hex digit in the document must be seen as a different value.
    target = _bytes(values, "handshake hash").hex()[:HEX_PREFIX]
    flipped = target[:-1] + ("0" if target[-1] != "0" else "1")
    changed = parse(block.replace(target, flipped, 1))
    assert changed["handshake hash"] != values["handshake hash"]


def test_document_values_form_a_real_handshake(doc_values: dict[str, bytes | str]) -> None:
    """Reproduce every derived value from the document's own inputs, with the relay's
    and the client's protocol code, without the script."""
    v = doc_values
    assert v["protocol name"] == noise.PROTOCOL_NAME
    assert _bytes(v, "prologue") == PROLOGUE
    relay_static = noise.load_private(_bytes(v, "relay static private key"))
    client_e = noise.load_private(_bytes(v, "client ephemeral private key"))
    relay_e = noise.load_private(_bytes(v, "relay ephemeral private key"))
    relay_public = noise.public_bytes(relay_static)
    assert _bytes(v, "relay static public key") == relay_public
    key_text = v["relay static public key, base64url"]
    assert isinstance(key_text, str)
    assert "=" not in key_text
    assert base64.urlsafe_b64decode(key_text + "=") == relay_public
    assert _bytes(v, "client ephemeral public key") == noise.public_bytes(client_e)
    assert _bytes(v, "relay ephemeral public key") == noise.public_bytes(relay_e)

    # The relay reads the document's message 1 and finds the document's hello in it.
    relay = noise.nk_responder(relay_static, PROLOGUE, e=relay_e)
    message1 = _bytes(v, "message 1 (client to relay)")
    assert message1[:32] == noise.public_bytes(client_e)
    padded_hello = relay.read_message(message1)
    assert len(padded_hello) == 256
    assert frames.unpad(padded_hello) == _bytes(v, "hello envelope")
    assert codec.decode_handshake(_bytes(v, "hello envelope")) == m.Hello(versions=(1,))

    # The client, pinned to the document's key, reads message 2 and finds the welcome.
    client = noise.nk_initiator(relay_public, PROLOGUE, e=client_e)
    assert client.write_message(frames.pad(_bytes(v, "hello envelope"))) == message1
    message2 = _bytes(v, "message 2 (relay to client)")
    assert relay.write_message(frames.pad(_bytes(v, "welcome envelope"))) == message2
    assert frames.unpad(client.read_message(message2)) == _bytes(v, "welcome envelope")
    welcome = codec.decode_handshake(_bytes(v, "welcome envelope"))
    assert welcome == wx.welcome_message()
    assert client.handshake_hash == relay.handshake_hash == _bytes(v, "handshake hash")

    # Transport: c1 carries the send to the relay, c2 the reply back, both at nonce 0.
    client_t = frames.Transport(*client.split())
    relay_t = frames.Transport(*relay.split())
    send = _bytes(v, "send envelope")
    wire1 = _bytes(v, "transport message 1 (client to relay, nonce 0)")
    assert len(wire1) in frames.WIRE_SIZES
    assert relay_t.open(wire1) == send
    assert codec.decode_request(send) == m.Send(id=1, room=str(v["room code"]), body=wx.BODY)
    sent = _bytes(v, "sent envelope")
    wire2 = _bytes(v, "transport message 2 (relay to client, nonce 0)")
    assert client_t.open(wire2) == sent
    assert codec.decode_server(sent) == m.Sent(id=1, room=str(v["room code"]), seq=1)


def test_a_changed_transport_message_is_refused(doc_values: dict[str, bytes | str]) -> None:
    """The example's transport message authenticates only as printed."""
    relay = noise.nk_responder(
        noise.load_private(_bytes(doc_values, "relay static private key")),
        PROLOGUE,
        e=noise.load_private(_bytes(doc_values, "relay ephemeral private key")),
    )
    relay.read_message(_bytes(doc_values, "message 1 (client to relay)"))
    relay.write_message(frames.pad(_bytes(doc_values, "welcome envelope")))
    relay_t = frames.Transport(*relay.split())
    wire = bytearray(_bytes(doc_values, "transport message 1 (client to relay, nonce 0)"))
    wire[40] ^= 0x01
    with pytest.raises(FrameError):
        relay_t.open(bytes(wire))


async def test_example_welcome_is_what_a_default_relay_sends() -> None:
    relay = Relay(
        Config(port=0, metrics_port=None),
        noise.load_private(bytes.fromhex(wx.RELAY_STATIC_PRIVATE)),
        CollectorRegistry(),
    )
    assert relay.welcome(bytes.fromhex(wx.POW_SEED)) == wx.welcome_message()
    assert relay.public_key == noise.public_bytes(
        noise.load_private(bytes.fromhex(wx.RELAY_STATIC_PRIVATE))
    )

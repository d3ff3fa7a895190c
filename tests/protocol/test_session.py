"""``protocol.session``: the two session objects every shell drives.

Golden transcripts first (literal bytes: any change to the wire shows up here), then the
state machine, the handshake's refusals, frames that fail, reply matching, ids and the
timers. Everything runs without sockets or clocks: time is an argument.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from haven.protocol import codec, frames, noise
from haven.protocol import messages as m
from haven.protocol.errors import DecodeError, ErrorCode, ProtocolError
from haven.protocol.messages import HANDSHAKE, REQUESTS, SERVER_MESSAGES
from haven.protocol.session import (
    CLIENT_TRANSITIONS,
    RELAY_TRANSITIONS,
    ClientSession,
    FrameRejected,
    HandshakeRejected,
    Input,
    KeepaliveDue,
    PingDue,
    Pushed,
    Refusal,
    Refused,
    RelaySession,
    ReplyReceived,
    SessionStateError,
    State,
    TimedOut,
    Undecodable,
    Welcomed,
    close_code,
    error_of_close,
)

GOLDEN = Path(__file__).with_name("golden")
TRANSCRIPT = json.loads((GOLDEN / "session.json").read_text("utf-8"))
ENVELOPES = json.loads(
    (Path(__file__).resolve().parents[2] / "web/sdk/test/golden.json").read_text("utf-8")
)["envelopes"]

SOME_KEY = noise.public_bytes(X25519PrivateKey.generate().public_key())


def _welcome() -> m.Welcome:
    msg = codec.decode_handshake(bytes.fromhex(TRANSCRIPT["welcome_envelope"]))
    assert isinstance(msg, m.Welcome)
    return msg


WELCOME = _welcome()


def _key(name: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(TRANSCRIPT[name]))


def pair(**client_kw: object) -> tuple[ClientSession, RelaySession]:
    """A client and a relay session with the handshake done (fresh random keys)."""
    static = X25519PrivateKey.generate()
    client = ClientSession(noise.public_bytes(static.public_key()), **client_kw)  # type: ignore[arg-type]
    relay = RelaySession(static)
    relay.receive_hello(client.start())
    assert isinstance(client.receive(relay.accept(WELCOME)), Welcomed)
    return client, relay


def down(relay: RelaySession, msg: m.Message) -> bytes:
    return relay.seal_padded(frames.pad(codec.encode(msg)))


# --------------------------------------------------------------------- golden


def test_every_message_type_has_a_literal_envelope_that_round_trips() -> None:
    """``web/sdk/test/golden.json`` holds one literal envelope per message type; Python
    decodes each and re-encodes it to exactly the same bytes (as the TypeScript SDK must)."""
    seen = set()
    for item in ENVELOPES:
        raw = bytes.fromhex(item["hex"])
        msg = codec.decode_any(raw)
        assert item["type"] == msg.T
        assert codec.encode(msg) == raw
        seen.add(item["type"])
    assert seen == set(REQUESTS) | set(SERVER_MESSAGES) | set(HANDSHAKE)


def test_client_session_replays_the_golden_transcript_byte_for_byte() -> None:
    static = _key("relay_static")
    client = ClientSession(noise.public_bytes(static.public_key()), e=_key("client_ephemeral"))
    assert client.start().hex() == TRANSCRIPT["hello"]
    event = client.receive(bytes.fromhex(TRANSCRIPT["welcome"]))
    assert event == Welcomed(WELCOME)
    for step in TRANSCRIPT["steps"]:
        msg = codec.decode_any(bytes.fromhex(step["envelope"]))
        frame = bytes.fromhex(step["frame"])
        if step["dir"] == "up":
            assert isinstance(msg, m.Request)
            assert client.send(msg) == frame, step["type"]
        else:
            got = client.receive(frame)
            if isinstance(msg, m.Reply):
                assert isinstance(got, ReplyReceived)
                assert got.reply == msg
            else:
                assert got == Pushed(msg)
    assert client.state is State.DRAINING  # the transcript ends with ``draining``
    assert client.retry_after == 5.0
    assert client.challenge == m.Challenge(seed=b"\x07" * 32, difficulty=8)


def test_relay_session_replays_the_golden_transcript_byte_for_byte() -> None:
    relay = RelaySession(_key("relay_static"), e=_key("relay_ephemeral"))
    hello = relay.receive_hello(bytes.fromhex(TRANSCRIPT["hello"]))
    assert hello == m.Hello(versions=(1,))
    assert relay.accept(WELCOME).hex() == TRANSCRIPT["welcome"]
    for step in TRANSCRIPT["steps"]:
        envelope = bytes.fromhex(step["envelope"])
        frame = bytes.fromhex(step["frame"])
        if step["dir"] == "up":
            assert relay.receive(frame) == codec.decode_request(envelope), step["type"]
        else:
            assert relay.seal_padded(frames.pad(envelope)) == frame, step["type"]


# -------------------------------------------------------------- state machine


def test_transition_tables_have_one_terminal_state() -> None:
    for table in (CLIENT_TRANSITIONS, RELAY_TRANSITIONS):
        assert not any(src is State.CLOSED and dst is not State.CLOSED
                       for (src, _), dst in table.items())  # fmt: skip
        for state in State:  # every state can end
            assert table[state, Input.CLOSE] is State.CLOSED


def test_inputs_a_table_does_not_list_raise_session_state_error() -> None:
    client = ClientSession(SOME_KEY)
    with pytest.raises(SessionStateError):
        client.send(m.Ping(id=1))  # not open yet
    client.start()
    with pytest.raises(SessionStateError):
        client.start()  # hello twice
    relay = RelaySession(X25519PrivateKey.generate())
    with pytest.raises(SessionStateError):
        relay.accept(WELCOME)  # welcome before hello
    with pytest.raises(SessionStateError):
        relay.receive(b"x" * 272)
    with pytest.raises(SessionStateError):
        relay.seal_padded(bytes(256))


def test_closed_sessions_refuse_to_send() -> None:
    client, _ = pair()
    client.connection_closed()
    assert client.state is State.CLOSED
    with pytest.raises(SessionStateError):
        client.send(m.Ping(id=client.take_id()))


# ------------------------------------------------------------------ handshake


def test_an_unsupported_version_is_refused_with_a_readable_error() -> None:
    static = X25519PrivateKey.generate()
    client = ClientSession(noise.public_bytes(static.public_key()), versions=(2,))
    relay = RelaySession(static)
    with pytest.raises(Refusal) as refused:
        relay.receive_hello(client.start())
    assert refused.value.close_code == close_code(ErrorCode.UNSUPPORTED_VERSION) == 4109
    assert refused.value.reply is not None
    assert relay.state is State.CLOSED
    event = client.receive(refused.value.reply)
    assert isinstance(event, Refused)
    assert event.error.code == ErrorCode.UNSUPPORTED_VERSION
    assert client.state is State.CLOSED


def test_a_wrong_pinned_key_fails_on_both_sides() -> None:
    client = ClientSession(noise.public_bytes(X25519PrivateKey.generate().public_key()))
    relay = RelaySession(X25519PrivateKey.generate())
    with pytest.raises(Refusal) as refused:
        relay.receive_hello(client.start())
    assert refused.value.close_code == close_code(ErrorCode.HANDSHAKE_FAILED)
    assert refused.value.reply is None
    # A reply the client cannot read (an impostor) is rejected, typed, and ends it.
    assert isinstance(client.receive(bytes(96)), HandshakeRejected)
    assert client.state is State.CLOSED


def test_the_subprotocol_checks() -> None:
    assert RelaySession.check_subprotocols(["x", "haven.v1"]) == "haven.v1"
    with pytest.raises(Refusal):
        RelaySession.check_subprotocols(["haven.v2"])
    ClientSession.check_subprotocol("haven.v1")
    ClientSession.check_subprotocol(None)
    with pytest.raises(SessionStateError):
        ClientSession.check_subprotocol("chat")


# --------------------------------------------------------------------- frames


def test_replies_are_matched_to_their_requests() -> None:
    client, relay = pair()
    rid = client.take_id()
    assert relay.receive(client.send(m.Join(id=rid, room="r"))) == m.Join(id=rid, room="r")
    assert client.in_flight == {rid: "join"}
    got = client.receive(down(relay, m.Error(id=rid, code=404, message="no such room")))
    assert isinstance(got, ReplyReceived)
    assert got.request == "join"
    assert client.in_flight == {}
    # A reply to nothing in flight (an error with id 0) is not matched.
    got = client.receive(down(relay, m.Error(id=0, code=400, message="slow down")))
    assert isinstance(got, ReplyReceived)
    assert got.request is None


def test_a_tampered_frame_closes_the_session_with_a_typed_code() -> None:
    client, relay = pair()
    frame = bytearray(down(relay, m.Pong(id=1)))
    frame[5] ^= 1
    got = client.receive(bytes(frame))
    assert got == FrameRejected(close_code(ErrorCode.DECRYPT_FAILED), got.reason)  # type: ignore[union-attr]
    assert client.state is State.CLOSED
    # Relay side: the shell closes with close_code(exc.code) and marks the session.
    bad = bytearray(client.seal_envelope(codec.encode(m.Ping(id=1))))
    bad[-1] ^= 1
    with pytest.raises(ProtocolError) as exc:
        relay.receive(bytes(bad))
    assert exc.value.code is ErrorCode.DECRYPT_FAILED
    relay.fail()
    assert relay.state is State.CLOSED


def test_text_from_the_relay_is_rejected_with_1003() -> None:
    client, _ = pair()
    assert client.receive("hello") == FrameRejected(1003, "the relay sent a text message")


def test_an_authenticated_frame_that_does_not_decode_is_skipped() -> None:
    client, relay = pair()
    rid = client.take_id()
    relay.receive(client.send(m.Ping(id=rid)))
    future = codec.encode(m.Pong(id=rid)).replace(b"pong", b"pang")
    got = client.receive(relay.seal_padded(frames.pad(future)))
    assert isinstance(got, Undecodable)
    assert isinstance(got.error, DecodeError)
    assert got.request == "ping"  # its request is no longer in flight
    assert client.state is State.OPEN


def test_a_request_too_large_for_any_frame_uses_no_nonce() -> None:
    client, relay = pair()
    with pytest.raises(ProtocolError):
        client.send(m.Send(id=client.take_id(), room="r", body=bytes(70_000)))
    # The next request still decrypts: the refused one spent no nonce.
    rid = client.take_id()
    assert relay.receive(client.send(m.Ping(id=rid))) == m.Ping(id=rid)


def test_reserved_ids_keep_the_wire_order() -> None:
    client, _ = pair()
    assert client.take_id() == 1
    rid = client.reserve_id(100)
    assert rid == 102
    assert client.take_id() == 2  # others go out meanwhile with lower ids
    assert client.claim(rid)
    assert client.take_id() == 103
    assert not client.claim(50)  # already passed


# -------------------------------------------------------------------- timers


def test_the_handshake_deadline() -> None:
    client = ClientSession(SOME_KEY, now=10.0, handshake_timeout=5.0)
    assert client.next_deadline() is None  # nothing sent yet
    client.start()
    assert client.next_deadline() == 15.0
    assert client.handle_timer(14.9) is None
    assert isinstance(client.handle_timer(15.0), TimedOut)
    assert client.state is State.CLOSED
    assert client.next_deadline() is None


def test_keepalive_pings_when_quiet_and_not_otherwise() -> None:
    client, relay = pair(keepalive=20.0)
    client.receive(down(relay, m.Pong(id=99)), now=100.0)
    assert client.next_deadline() == 120.0
    assert client.handle_timer(119.0) is None
    due = client.handle_timer(120.0)
    assert isinstance(due, PingDue)
    ping = relay.receive(due.frame)
    assert isinstance(ping, m.Ping)
    assert client.in_flight == {ping.id: "ping"}
    assert client.next_deadline() == 140.0  # one ping per quiet interval


def test_relay_idle_and_keepalive_deadlines() -> None:
    static = X25519PrivateKey.generate()
    client = ClientSession(noise.public_bytes(static.public_key()))
    relay = RelaySession(static, idle_timeout=300.0, ping_interval=30.0)
    assert relay.next_deadline() is None  # handshake deadlines belong to the shell
    relay.receive_hello(client.start())
    relay.accept(WELCOME, now=1000.0)
    assert relay.next_deadline() == 1030.0
    assert relay.handle_timer(1029.0) is None
    assert isinstance(relay.handle_timer(1030.0), KeepaliveDue)
    assert relay.next_deadline() == 1060.0
    relay.last_rx = 1050.0  # the client spoke
    assert relay.next_deadline() == 1080.0
    timed_out = relay.handle_timer(1350.0)
    assert timed_out == TimedOut(close_code(ErrorCode.IDLE_TIMEOUT), "idle timeout")
    assert relay.state is State.CLOSED
    assert relay.next_deadline() is None


# ----------------------------------------------------------------- close codes


@pytest.mark.parametrize(
    ("code", "error"),
    [(4406, ErrorCode.SLOW_CONSUMER), (4105, ErrorCode(105)), (1001, None), (None, None),
     (4999, None), (5000, None)],
)  # fmt: skip
def test_close_codes_map_to_error_codes(code: int | None, error: ErrorCode | None) -> None:
    assert error_of_close(code) == error
    if error is not None:
        assert close_code(error) == code

"""Bus sealing: opaque subjects, AEAD payloads bound to their subject, no replays."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.cluster.seal import OVERHEAD, BusSealError, ClusterKey, Opener, Sealer
from haven.relay.keys import KeyFileError, read_cluster_key, write_cluster_key, write_private_key

KEY = bytes(range(32))


def test_subjects_are_opaque_stable_and_keyed() -> None:
    key = ClusterKey(KEY)
    s = key.subject("room", "ABCD-1234")
    assert re.fullmatch(rb"hv\.[0-9a-f]{32}", s)
    assert b"ABCD" not in s
    assert s == ClusterKey(KEY).subject("room", b"ABCD-1234")  # every relay agrees
    assert s != key.subject("queue", "ABCD-1234")  # kinds never collide
    assert s != ClusterKey(bytes(32)).subject("room", "ABCD-1234")  # another cluster
    assert ClusterKey(KEY, prefix="hx").subject("room", "x").startswith(b"hx.")
    with pytest.raises(ValueError, match="prefix"):
        ClusterKey(KEY, prefix="a.b")


def test_seal_open_round_trip_from_several_senders() -> None:
    key = ClusterKey(KEY)
    a, b = Sealer(key), Sealer(key)
    opener = Opener(ClusterKey(KEY))
    subject = key.subject("room", "r")
    for i in range(3):
        for sealer in (a, b):
            sealed = sealer.seal(subject, b"m%d" % i)
            assert len(sealed) == len(b"m%d" % i) + OVERHEAD
            assert b"m%d" % i not in sealed
            assert opener.open(subject, sealed) == (sealer.sender, b"m%d" % i)


def test_replays_moves_and_forgeries_are_refused() -> None:
    key = ClusterKey(KEY)
    sealer, opener = Sealer(key), Opener(key)
    room, other = key.subject("room", "r"), key.subject("room", "s")
    first = sealer.seal(room, b"one")
    second = sealer.seal(room, b"two")
    assert opener.open(room, second)[1] == b"two"
    with pytest.raises(BusSealError, match="replayed"):
        opener.open(room, second)
    with pytest.raises(BusSealError, match="replayed"):
        opener.open(room, first)  # older than the newest seen from that sender
    third = sealer.seal(room, b"three")
    with pytest.raises(BusSealError, match="authentication"):
        opener.open(other, third)  # moved to another subject
    flipped = bytearray(third)
    flipped[-1] ^= 1
    with pytest.raises(BusSealError, match="authentication"):
        opener.open(room, bytes(flipped))
    with pytest.raises(BusSealError, match="authentication"):
        Opener(ClusterKey(bytes(32))).open(room, third)  # another cluster's key
    assert opener.open(room, third)[1] == b"three"  # the failures changed nothing


@given(st.binary(max_size=200))
def test_garbage_never_opens(data: bytes) -> None:
    key = ClusterKey(KEY)
    with pytest.raises(BusSealError):
        Opener(key).open(key.subject("room", "r"), data)


def test_nonces_never_repeat_per_key() -> None:
    key = ClusterKey(KEY)
    sealer = Sealer(key)
    headers = {sealer.seal(b"hv.x", b"")[:25] for _ in range(1000)}
    assert len(headers) == 1000
    assert Sealer(key).sender != sealer.sender  # a fresh random sender per process


def test_sender_table_is_bounded() -> None:
    key = ClusterKey(KEY)
    opener = Opener(key, max_senders=4)
    for _ in range(10):
        opener.open(b"hv.x", Sealer(key).seal(b"hv.x", b""))
    assert len(opener._senders) == 4


def test_cluster_key_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    raw = ClusterKey.generate()
    write_cluster_key(path, raw)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_cluster_key(path) == raw
    with pytest.raises(KeyFileError, match="exists"):
        write_cluster_key(path, raw)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    relay_key = tmp_path / "relay.key"
    write_private_key(relay_key, X25519PrivateKey.generate())
    with pytest.raises(KeyFileError, match="is a relay key"):
        read_cluster_key(relay_key)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        read_cluster_key(path)

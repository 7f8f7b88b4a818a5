"""Heartbeat codec: Octavia's wire format, every kind of bad datagram, replay protection."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amphorae.common import heartbeat as hb
from amphorae.common.heartbeat import InvalidHeartbeat, ReplayGuard

KEY = "insecure-test-key"
AMP = "8f6e5c1a-3f0c-4a51-9a8e-0d6b0c3b7f21"
LISTENER = "2d9b4c2e-52b7-4b8b-a3f5-0c51c1f1c9a1"
POOL = "a3c0c9a6-9c21-4f6e-8f7e-5f7d5bb1d0e2"
MEMBER = "5f1f0b53-44b7-4d2a-b7f0-9b1dbb1c3a70"


def _message(seq: int = 1, **kw) -> dict:
    listeners = {LISTENER: {"status": "OPEN", "stats": {"tx": 10, "rx": 20, "conns": 1,
                                                       "totconns": 3, "ereq": 0}}}
    pools = {f"{POOL}:{LISTENER}": {"status": "UP", "members": {MEMBER: "UP"}}}
    return hb.build_message(AMP, seq, listeners, pools, **kw)


def _sign_hex(payload: bytes, key: str = KEY) -> bytes:
    return payload + hmac.new(key.encode(), payload, hashlib.sha256).hexdigest().encode()


def _sign_raw(payload: bytes, key: str = KEY) -> bytes:
    return payload + hmac.new(key.encode(), payload, hashlib.sha256).digest()


def _reason(datagram: bytes, key: str = KEY) -> str:
    with pytest.raises(InvalidHeartbeat) as info:
        hb.decode(datagram, key)
    assert info.value.reason in hb.REASONS
    return info.value.reason


# -- wire format ---------------------------------------------------------------------

def test_round_trip():
    message = _message(7, boot_id="b1", started_at=1700000000.5)
    assert hb.decode(hb.encode(message, KEY), KEY) == message


def test_wire_format_is_octavias():
    message = _message()
    datagram = hb.encode(message, KEY)
    payload, digest = datagram[:-64], datagram[-64:]
    # zlib at level 9 (header 0x78 0xDA), then the hex HMAC of the compressed bytes.
    assert payload[:2] == b"\x78\xda"
    assert json.loads(zlib.decompress(payload)) == message
    assert digest == hmac.new(KEY.encode(), payload, hashlib.sha256).hexdigest().encode()


def test_build_message_layout():
    message = hb.build_message(AMP, 3, {}, {})
    assert message == {"id": AMP, "seq": 3, "ver": 3, "listeners": {}, "pools": {}}
    marked = hb.build_message(AMP, 0, {}, {}, boot_id="x", started_at=5)
    assert marked["boot"] == "x" and marked["t0"] == 5


def test_unicode_key_is_utf8():
    key = "clé-ключ"
    datagram = hb.encode(_message(), key)
    assert hb.decode(datagram, key) == _message()
    assert _reason(datagram, "cle-kljuch") == hb.FORGED


def test_legacy_raw_digest_accepted():
    payload = zlib.compress(json.dumps(_message()).encode(), 9)
    assert hb.decode(_sign_raw(payload), KEY) == _message()


def test_empty_key_is_a_configuration_error():
    with pytest.raises(ValueError):
        hb.encode(_message(), "")
    with pytest.raises(ValueError):
        hb.decode(hb.encode(_message(), KEY), "")


def test_encode_refuses_what_the_receiver_would_drop():
    # Incompressible content: random-looking member names.
    members = {hashlib.sha256(str(i).encode()).hexdigest(): "UP" for i in range(2000)}
    message = hb.build_message(AMP, 1, {}, {"p:l": {"status": "UP", "members": members}})
    with pytest.raises(ValueError):
        hb.encode(message, KEY)


# -- every kind of bad datagram ------------------------------------------------------

def test_forged_wrong_key():
    assert _reason(hb.encode(_message(), "another-key")) == hb.FORGED


def test_forged_legacy_digest_with_wrong_key():
    payload = zlib.compress(json.dumps(_message()).encode(), 9)
    assert _reason(_sign_raw(payload, "another-key")) == hb.FORGED


def test_unsigned():
    assert _reason(zlib.compress(json.dumps(_message()).encode(), 9)) == hb.UNSIGNED


@pytest.mark.parametrize("cut", [1, 30, 63, 64, 70])
def test_truncated(cut):
    datagram = hb.encode(_message(), KEY)
    # cut < 64 leaves part of the digest; 64 removes it whole (then it reads as unsigned);
    # more cuts into the compressed data.
    expected = hb.UNSIGNED if cut == 64 else hb.TRUNCATED
    assert _reason(datagram[:-cut]) == expected


@pytest.mark.parametrize("size", [0, 1, 32, 40])
def test_too_short_is_truncated(size):
    assert _reason(hb.encode(_message(), KEY)[:size]) == hb.TRUNCATED


def test_every_single_bit_flip_is_refused():
    datagram = hb.encode(_message(), KEY)
    for index in range(len(datagram)):
        for bit in (0x01, 0x80):
            flipped = bytearray(datagram)
            flipped[index] ^= bit
            # In the payload or in the digest: a signature that does not match.
            assert _reason(bytes(flipped)) == hb.FORGED, (index, bit)


def test_oversized():
    assert _reason(b"\x00" * (hb.MAX_DATAGRAM + 1)) == hb.OVERSIZED
    # Checked before anything else, even for a well-signed one.
    padding = zlib.compress(b" " * 10, 9)
    big = _sign_hex(padding + b"\x00" * hb.MAX_DATAGRAM)
    assert _reason(big) == hb.OVERSIZED


def _bomb() -> bytes:
    # 64 MiB of spaces deflate to ~64 KiB; 20 MiB is enough and stays well under a datagram.
    raw = b"{" + b" " * (20 * 1024 * 1024) + b"}"
    payload = zlib.compress(raw, 9)
    assert len(payload) < hb.MAX_DATAGRAM - 64
    return payload


def test_zlib_bomb_signed():
    assert _reason(_sign_hex(_bomb())) == hb.DECOMPRESSION_BOMB


def test_zlib_bomb_unsigned():
    assert _reason(_bomb()) == hb.DECOMPRESSION_BOMB


@pytest.mark.parametrize("extra, ok", [(0, True), (1, False)])
def test_bound_is_exact(extra, ok):
    raw = json.dumps(_message()).encode()
    raw += b" " * (hb.MAX_DECOMPRESSED - len(raw) + extra)  # JSON allows trailing blanks
    datagram = _sign_hex(zlib.compress(raw, 9))
    if ok:
        assert hb.decode(datagram, KEY) == _message()
    else:
        assert _reason(datagram) == hb.DECOMPRESSION_BOMB


@pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe\x00", b"{\"id\": ", b"[" * 100000,
                                 b"NaN-ish {}"])
def test_non_json(raw):
    with pytest.raises(InvalidHeartbeat) as info:
        hb.decode(_sign_hex(zlib.compress(raw, 9)), KEY)
    assert info.value.reason == hb.MALFORMED
    assert "JSON" in info.value.detail


def test_signed_but_not_zlib():
    assert _reason(_sign_hex(b"plain text, not compressed")) == hb.MALFORMED


def test_signed_zlib_with_trailing_bytes():
    payload = zlib.compress(json.dumps(_message()).encode(), 9) + b"extra"
    assert _reason(_sign_hex(payload)) == hb.MALFORMED


def _with(**changes) -> dict:
    message = _message()
    for field, value in changes.items():
        if value is ...:
            del message[field]
        else:
            message[field] = value
    return message


@pytest.mark.parametrize("message", [
    [1, 2, 3],
    "a string",
    _with(id=...),
    _with(id=5),
    _with(id=""),
    _with(seq=...),
    _with(seq="1"),
    _with(seq=True),
    _with(seq=1.5),
    _with(seq=-1),
    _with(ver=...),
    _with(ver=None),
    _with(listeners=...),
    _with(listeners=[]),
    _with(pools=...),
    _with(pools="x"),
    _with(boot=""),
    _with(boot=7),
    _with(boot="x" * 65),
    _with(t0="yesterday"),
    _with(t0=True),
])
def test_wrong_structure(message):
    raw = json.dumps(message).encode()
    with pytest.raises(InvalidHeartbeat) as info:
        hb.decode(_sign_hex(zlib.compress(raw, 9)), KEY)
    assert info.value.reason == hb.MALFORMED


def test_non_finite_start_time():
    raw = b'{"id":"a","seq":1,"ver":3,"listeners":{},"pools":{},"t0":Infinity}'
    assert _reason(_sign_hex(zlib.compress(raw, 9))) == hb.MALFORMED


def test_unknown_fields_pass_through():
    message = _with(extra={"future": True})
    assert hb.decode(hb.encode(message, KEY), KEY)["extra"] == {"future": True}


# -- properties ----------------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_invalid_heartbeat(data):
    with pytest.raises(InvalidHeartbeat):
        hb.decode(data, KEY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.booleans(), st.booleans())
def test_arbitrary_signed_bytes_only_raise_invalid_heartbeat(data, compress, legacy):
    # Even with a valid signature (a key holder gone wrong) the parser fails cleanly.
    payload = zlib.compress(data, 9) if compress else data
    datagram = (_sign_raw if legacy else _sign_hex)(payload)
    try:
        message = hb.decode(datagram, KEY)
    except InvalidHeartbeat:
        return
    assert isinstance(message, dict) and isinstance(message["id"], str)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "seq", "ver", "listeners", "pools", "boot",
                                        "t0", "x"]), _json))
def test_arbitrary_signed_json_only_raises_invalid_heartbeat(message):
    datagram = _sign_hex(zlib.compress(json.dumps(message).encode(), 9))
    try:
        decoded = hb.decode(datagram, KEY)
    except InvalidHeartbeat as exc:
        assert exc.reason == hb.MALFORMED
        return
    assert decoded == message


# -- replay guard --------------------------------------------------------------------

def test_replay_rejected():
    guard = ReplayGuard()
    first = _message(5, boot_id="b1", started_at=100.0)
    assert guard.admit(first)
    assert not guard.admit(first)                      # the same datagram again
    assert not guard.admit(_message(4, boot_id="b1", started_at=100.0))  # an older one
    assert guard.admit(_message(6, boot_id="b1", started_at=100.0))
    assert not guard.admit(_message(6, boot_id="b1", started_at=100.0))


def test_restart_accepted():
    guard = ReplayGuard()
    assert guard.admit(_message(9000, boot_id="b1", started_at=100.0))
    # The agent restarted: seq starts again, the start marker is new and later.
    assert guard.admit(_message(0, boot_id="b2", started_at=200.0))
    assert guard.admit(_message(1, boot_id="b2", started_at=200.0))
    assert not guard.admit(_message(1, boot_id="b2", started_at=200.0))


def test_replay_of_an_older_start_rejected():
    guard = ReplayGuard()
    assert guard.admit(_message(9000, boot_id="b1", started_at=100.0))
    assert guard.admit(_message(3, boot_id="b2", started_at=200.0))
    # Captured datagrams of the earlier start, however high their seq, stay refused.
    assert not guard.admit(_message(9001, boot_id="b1", started_at=100.0))
    assert not guard.admit(_message(1, boot_id="b0", started_at=50.0))
    # ... and do not disturb the current start.
    assert guard.admit(_message(4, boot_id="b2", started_at=200.0))


def test_new_marker_without_later_start_time_rejected():
    guard = ReplayGuard()
    assert guard.admit(_message(10, boot_id="b1", started_at=100.0))
    assert not guard.admit(_message(11, boot_id="b2", started_at=100.0))
    assert not guard.admit(_message(11, boot_id="b2"))


def test_sender_without_markers_is_checked_by_seq():
    guard = ReplayGuard()
    assert guard.admit(_message(3))
    assert not guard.admit(_message(3))
    assert not guard.admit(_message(0))
    assert guard.admit(_message(4))
    # Upgrading to a marked sender counts as a restart.
    assert guard.admit(_message(0, boot_id="b1", started_at=1.0))
    assert not guard.admit(_message(99))


def test_amphorae_are_independent_and_forgettable():
    guard = ReplayGuard()
    other = hb.build_message("other-amphora", 1, {}, {})
    assert guard.admit(_message(1))
    assert guard.admit(other)
    assert len(guard) == 2
    guard.forget(AMP)
    guard.forget("never-seen")
    assert len(guard) == 1
    assert guard.admit(_message(1))


def test_guard_after_decode():
    guard = ReplayGuard()
    datagram = hb.encode(_message(1, boot_id="b1", started_at=1.5), KEY)
    assert guard.admit(hb.decode(datagram, KEY))
    assert not guard.admit(hb.decode(datagram, KEY))

"""The heartbeat codec: what an amphora's agent sends and the health manager accepts.

Wire format (Octavia's, so either side can talk to the other's): the message dict as
JSON, compressed with zlib level 9, followed by the HMAC-SHA256 of the *compressed* bytes
under the shared ``[health_manager] heartbeat_key`` (UTF-8), written as the 64-character
hex digest. The receiver also accepts the raw 32-byte digest older amphorae append.

``decode`` accepts a datagram only when it is authentic, bounded and well formed; every
other input raises :class:`InvalidHeartbeat` with a ``reason`` saying why, so a receiver
can drop it and count the cause. Only authenticated bytes are parsed: the JSON parser
never sees data an attacker without the key could have chosen.

Replays of authentic datagrams are a separate concern, handled by :class:`ReplayGuard`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import string
import threading
import zlib
from dataclasses import dataclass
from typing import Any

VERSION = 3
# Largest datagram accepted. A receiver should read MAX_DATAGRAM + 1 bytes so that a
# larger one is seen as oversized instead of being silently cut to a "truncated" one.
MAX_DATAGRAM = 64 * 1024
RECV_BUFFER = MAX_DATAGRAM + 1
# Largest decompressed message. A real heartbeat of a busy amphora is tens of KiB; the
# bound keeps a few KiB of crafted zlib from expanding into gigabytes.
MAX_DECOMPRESSED = 1024 * 1024
MAX_BOOT_ID = 64

HEX_DIGEST_LEN = 64
RAW_DIGEST_LEN = 32
# zlib header (2) + the shortest deflate block (2) + adler32 (4): anything not longer
# than this plus a raw digest cannot be a whole heartbeat.
_MIN_ZLIB = 8
_HEX_BYTES = frozenset(string.hexdigits.encode())

# Reasons carried by InvalidHeartbeat.
UNSIGNED = "unsigned"
FORGED = "forged"
TRUNCATED = "truncated"
OVERSIZED = "oversized"
MALFORMED = "malformed"
DECOMPRESSION_BOMB = "decompression-bomb"
REASONS = (UNSIGNED, FORGED, TRUNCATED, OVERSIZED, MALFORMED, DECOMPRESSION_BOMB)


class InvalidHeartbeat(Exception):
    """A datagram that must be dropped; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _key_bytes(key: str | bytes) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not raw:
        # A configuration error, not a bad packet: an empty key would authenticate anyone.
        raise ValueError("heartbeat_key must not be empty")
    return raw


def _mac(key: bytes, payload: bytes) -> hmac.HMAC:
    return hmac.new(key, payload, hashlib.sha256)


def build_message(amphora_id: str, seq: int, listeners: dict[str, Any],
                  pools: dict[str, Any], *, boot_id: str | None = None,
                  started_at: float | None = None, load: float | None = None,
                  ver: int = VERSION) -> dict[str, Any]:
    """A heartbeat message in Octavia's version 3 layout (reference §5.2).

    ``boot_id`` (any string unique per agent start, e.g. a uuid4) and ``started_at`` (the
    agent's start time, Unix seconds) let :class:`ReplayGuard` tell a restarted agent,
    whose ``seq`` starts again from 0, from a replay. ``load`` (0 to 1) is how busy the
    amphora's HAProxy is, for scaling (not Octavia's amphora_health.busy). Octavia's
    receiver ignores all three.
    """
    message: dict[str, Any] = {"id": amphora_id, "seq": seq, "ver": ver,
                               "listeners": listeners, "pools": pools}
    if boot_id is not None:
        message["boot"] = boot_id
    if started_at is not None:
        message["t0"] = started_at
    if load is not None:
        message["load"] = load
    return message


def encode(message: dict[str, Any], key: str | bytes) -> bytes:
    """One datagram: zlib(JSON) followed by its HMAC-SHA256 hex digest."""
    payload = zlib.compress(json.dumps(message, separators=(",", ":")).encode("utf-8"), 9)
    datagram = payload + _mac(_key_bytes(key), payload).hexdigest().encode("ascii")
    if len(datagram) > MAX_DATAGRAM:
        # The receiver would drop it; better the sender learns now.
        raise ValueError(f"heartbeat of {len(datagram)} bytes exceeds {MAX_DATAGRAM}")
    return datagram


def decode(datagram: bytes, key: str | bytes) -> dict[str, Any]:
    """The message inside ``datagram``, or :class:`InvalidHeartbeat`."""
    mac_key = _key_bytes(key)
    data = bytes(datagram)
    if len(data) > MAX_DATAGRAM:
        raise InvalidHeartbeat(OVERSIZED, f"{len(data)} bytes > {MAX_DATAGRAM}")
    if len(data) <= RAW_DIGEST_LEN + _MIN_ZLIB:
        raise InvalidHeartbeat(TRUNCATED, f"only {len(data)} bytes")
    payload = _authenticate(data, mac_key)
    text = _inflate(payload)
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidHeartbeat(MALFORMED, f"not JSON: {type(exc).__name__}") from None
    _check_structure(message)
    return message


def _authenticate(data: bytes, key: bytes) -> bytes:
    """The signed payload, trying the hex digest first and the legacy raw one second."""
    if len(data) > HEX_DIGEST_LEN:
        payload, digest = data[:-HEX_DIGEST_LEN], data[-HEX_DIGEST_LEN:]
        # Compare as bytes: the sender's hex is lower case, as hexdigest() writes it.
        if hmac.compare_digest(digest, _mac(key, payload).hexdigest().encode("ascii")):
            return payload
    payload, digest = data[:-RAW_DIGEST_LEN], data[-RAW_DIGEST_LEN:]
    if hmac.compare_digest(digest, _mac(key, payload).digest()):
        return payload
    reason, detail = _classify_unauthentic(data)
    raise InvalidHeartbeat(reason, detail)


def _classify_unauthentic(data: bytes) -> tuple[str, str]:
    """Why a datagram failed authentication, for the receiver's logs and counters.

    Best effort and bounded: the datagram is dropped whatever this says. The bytes are
    inflated (output discarded, at most MAX_DECOMPRESSED) only to find where the zlib
    stream ends; nothing of them is parsed.
    """
    tail = data[-HEX_DIGEST_LEN:]
    if len(data) > HEX_DIGEST_LEN and all(b in _HEX_BYTES for b in tail):
        return FORGED, "digest does not match (wrong key or altered content)"
    inflater = zlib.decompressobj()
    produced = 0
    chunk = data
    try:
        while not inflater.eof:
            out = inflater.decompress(chunk, 64 * 1024)
            produced += len(out)
            if produced > MAX_DECOMPRESSED:
                return DECOMPRESSION_BOMB, f"expands beyond {MAX_DECOMPRESSED} bytes"
            chunk = inflater.unconsumed_tail
            if not out and not chunk:
                break  # the stream wants more input than the datagram has
    except zlib.error:
        return FORGED, "no valid digest"
    if not inflater.eof:
        return TRUNCATED, "compressed data ends early"
    rest = inflater.unused_data
    if not rest:
        return UNSIGNED, "no digest after the compressed data"
    if len(rest) < HEX_DIGEST_LEN and all(b in _HEX_BYTES for b in rest):
        return TRUNCATED, f"digest cut to {len(rest)} of {HEX_DIGEST_LEN} characters"
    return FORGED, "digest does not match"


def _inflate(payload: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # One byte more than allowed: getting it means the message is too large.
        out = inflater.decompress(payload, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise InvalidHeartbeat(MALFORMED, f"bad zlib data: {exc}") from None
    if len(out) > MAX_DECOMPRESSED:
        raise InvalidHeartbeat(DECOMPRESSION_BOMB, f"expands beyond {MAX_DECOMPRESSED} bytes")
    if not inflater.eof:
        raise InvalidHeartbeat(MALFORMED, "compressed data ends early")
    if inflater.unused_data:
        raise InvalidHeartbeat(MALFORMED, "bytes after the compressed data")
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_structure(message: object) -> None:
    """The fields every consumer relies on; the contents of listeners/pools are theirs."""
    def bad(detail: str) -> InvalidHeartbeat:
        return InvalidHeartbeat(MALFORMED, detail)

    if not isinstance(message, dict):
        raise bad(f"message is a {type(message).__name__}, not an object")
    if not isinstance(message.get("id"), str) or not message["id"]:
        raise bad("'id' must be a non-empty string")
    for field in ("seq", "ver"):
        if not _is_int(message.get(field)) or message[field] < 0:
            raise bad(f"'{field}' must be a non-negative integer")
    for field in ("listeners", "pools"):
        if not isinstance(message.get(field), dict):
            raise bad(f"'{field}' must be an object")
    boot = message.get("boot")
    if boot is not None and (not isinstance(boot, str) or not 0 < len(boot) <= MAX_BOOT_ID):
        raise bad(f"'boot' must be a string of 1 to {MAX_BOOT_ID} characters")
    t0 = message.get("t0")
    if t0 is not None and (isinstance(t0, bool) or not isinstance(t0, int | float)
                           or not math.isfinite(t0)):
        raise bad("'t0' must be a finite number")


@dataclass(frozen=True)
class _Seen:
    boot: str | None
    t0: float | None
    seq: int


class ReplayGuard:
    """Refuses authentic heartbeats that were already seen (or older ones), per amphora.

    The rule, for a decoded message of amphora A against the last message admitted for A:

    * no message admitted yet for A: admit;
    * same agent start (same ``boot``, or both without one): admit only if ``seq`` is
      greater than the last one;
    * another agent start: admit only if its start time ``t0`` is later than the recorded
      start (or none was recorded); the new start then replaces the old one, so its
      ``seq`` counts afresh from wherever it starts.

    Sequence numbers are compared only within one agent start. Comparing them across
    starts would let an old start's high-numbered datagrams be replayed after a restart,
    and flip the state between the two. The cost: a restarted agent whose clock went
    backwards is refused until the amphora is failed over (its replacement has a new id)
    or :meth:`forget` is called. Senders without a ``boot`` marker (Octavia's own agent)
    are checked by ``seq`` alone, so their restarts are refused the same way.

    Only authenticated messages should reach the guard: ids come from key holders, so
    the table holds one small entry per real amphora. Thread-safe.
    """

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def admit(self, message: dict[str, Any]) -> bool:
        """True (and remembered) when ``message`` is new; False for a replay."""
        boot = message.get("boot")
        t0 = message.get("t0")
        current = _Seen(boot, float(t0) if t0 is not None else None, message["seq"])
        amphora_id = message["id"]
        with self._lock:
            last = self._seen.get(amphora_id)
            if last is None:
                ok = True
            elif current.boot == last.boot:
                ok = current.seq > last.seq
            else:
                ok = current.t0 is not None and (last.t0 is None or current.t0 > last.t0)
            if ok:
                self._seen[amphora_id] = current
            return ok

    def forget(self, amphora_id: str) -> None:
        """Drop what is known of an amphora (deleted, failed over)."""
        with self._lock:
            self._seen.pop(amphora_id, None)

    def __len__(self) -> int:
        return len(self._seen)

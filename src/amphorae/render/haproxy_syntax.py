"""Small pure helpers for writing haproxy.cfg safely: quoting of words, log-format
escaping, ACL patterns, health-check status lists and TLS option words.

HAProxy's tokenizer (2.x) splits a line on blanks; ``#`` starts a comment, ``\\`` escapes,
``$NAME`` / ``${NAME}`` expand environment variables outside single quotes, and single
quotes take everything literally. A word that carries user data therefore goes out either
bare (only harmless characters), in single quotes, or — when it holds a single quote or a
control character — in double quotes with every special character escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Printable ASCII that the tokenizer never treats specially.
_BARE = re.compile(r"[A-Za-z0-9!%&()*+,./:;<=>?@\[\]^_`{|}~-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters a double-quoted word must escape, besides control characters.
_DQ_ESCAPE = {"\\": "\\\\", '"': '\\"', "$": "\\$", "#": "\\#", "'": "\\'"}

# Names of proxies, servers, peers and ACLs (HAProxy accepts these characters only).
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
# An HTTP header or cookie name (RFC 9110 token), used inside a fetch's parentheses;
# parentheses and commas would end the argument, so they are not tokens anyway.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A distinguished-name attribute: a short name (CN, emailAddress) or a dotted OID.
_DN_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*")

TLS_VERSION_FLAGS = (
    ("SSLv3", "no-sslv3"),
    ("TLSv1", "no-tlsv10"),
    ("TLSv1.1", "no-tlsv11"),
    ("TLSv1.2", "no-tlsv12"),
    ("TLSv1.3", "no-tlsv13"),
)


def quote(value: str) -> str:
    """``value`` as exactly one haproxy.cfg word that parses back to ``value``."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot be written into haproxy.cfg")
    if value and _BARE.fullmatch(value):
        return value
    if "'" not in value and not _CONTROL.search(value):
        return f"'{value}'"
    out = []
    for ch in value:
        if ch in _DQ_ESCAPE:
            out.append(_DQ_ESCAPE[ch])
        elif _CONTROL.match(ch):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def log_format_literal(value: str) -> str:
    """Text that a log-format string (log-format, set-header, redirect) keeps verbatim."""
    return value.replace("%", "%%")


def has_control(value: str) -> bool:
    return bool(_CONTROL.search(value))


def name(value: str, what: str = "name") -> str:
    """A proxy/server/ACL/peer name, refused when HAProxy would not take it."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid HAProxy {what}: {value!r}")
    return value


def http_token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def dn_field(value: str) -> str:
    if not _DN_FIELD.fullmatch(value):
        raise ValueError(f"invalid distinguished-name field: {value!r}")
    return value


def acl_pattern(value: str) -> str:
    """One ACL pattern word; ``--`` ends the flags first when it would look like one."""
    word = quote(value)
    return f"-- {word}" if value.startswith("-") else word


def status_list(codes: Iterable[int]) -> str:
    """Codes as HAProxy's ``http-check expect status`` list: runs collapse into ranges."""
    ordered = sorted(set(codes))
    if not ordered:
        raise ValueError("no status codes")
    parts = []
    start = prev = ordered[0]
    for code in [*ordered[1:], None]:
        if code is not None and code == prev + 1:
            prev = code
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if code is not None:
            start = prev = code
    return ",".join(parts)


def tls_version_flags(versions: Sequence[str]) -> list[str]:
    """``no-xxx`` words for every protocol version not allowed."""
    allowed = set(versions)
    return [flag for version, flag in TLS_VERSION_FLAGS if version not in allowed]


def cipher_words(ciphers: str | None) -> list[str]:
    """``ciphers`` / ``ciphersuites`` words from one OpenSSL-style list.

    Octavia passes one colon list with TLS 1.3 suite names mixed in to ``ciphers``, which
    OpenSSL ignores for TLS 1.3; the ``TLS_*`` names belong to ``ciphersuites``.
    """
    if not ciphers:
        return []
    items = [c for c in ciphers.split(":") if c]
    tls12 = [c for c in items if not c.startswith("TLS_")]
    tls13 = [c for c in items if c.startswith("TLS_")]
    words = []
    if tls12:
        words += ["ciphers", quote(":".join(tls12))]
    if tls13:
        words += ["ciphersuites", quote(":".join(tls13))]
    return words

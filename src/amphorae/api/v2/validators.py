"""Checks more than one resource applies (listeners and pools, and the fully populated
create that builds both), so that resource modules need not import each other."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, Field

from amphorae.api import types as t
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.drivers import registry

MAX_INT32 = 2147483647
_CIPHER_CHARS = re.compile(r"^[A-Za-z0-9\-+!:@=_.]*$")


def not_sctp(value: str) -> str:
    # Refused where the amphorae could never carry it (accepted by the no-op drivers).
    if value == c.SCTP and not registry.amphora_class().carries_sctp:
        raise ValueError("SCTP is not supported by this deployment.")
    return value


def _cipher_chars(value: str) -> str:
    if not _CIPHER_CHARS.match(value):
        raise ValueError("Cipher strings may only contain the characters "
                         "A-Z a-z 0-9 - + ! : @ = _ .")
    return value


Ciphers = Annotated[t.Ciphers, AfterValidator(_cipher_chars)]
Int32 = Annotated[t.IntLike, Field(ge=0, le=MAX_INT32)]


def check_tls_params(ciphers: str | None, versions: list[str] | None,
                     alpn: list[str] | None, sent: Iterable[str]) -> None:
    """Checks of client-supplied TLS parameters (defaults are trusted)."""
    sent = set(sent)
    if "tls_ciphers" in sent and ciphers:
        prohibited = {x for x in config.CONF.api_settings.tls_cipher_prohibit_list.split(":")
                      if x}
        rejected = [x for x in ciphers.split(":") if x in prohibited]
        if rejected:
            raise errors.ValidationError(
                detail="The following ciphers have been prohibited by an administrator: "
                + ", ".join(rejected))
    if "tls_versions" in sent and versions is not None:
        if not versions:
            raise errors.ValidationError(
                detail="Empty TLS version list. Either specify at least one TLS version or "
                       "remove this parameter to use the default.")
        minimum = config.CONF.api_settings.minimum_tls_version
        if minimum:
            floor = c.TLS_VERSIONS.index(minimum)
            for version in versions:
                if c.TLS_VERSIONS.index(version) < floor:
                    raise errors.ValidationError(
                        detail=f"TLS version {version} violates minimum TLS version required")
    if "alpn_protocols" in sent and alpn is not None and not alpn:
        raise errors.ValidationError(
            detail="Empty ALPN protocol list. Either specify at least one ALPN protocol or "
                   "remove this parameter to use the default.")


def check_pool_protocol(listener_protocol: str, pool_protocol: str) -> None:
    """A listener can only send its traffic to a pool of a compatible protocol."""
    if listener_protocol == c.PROMETHEUS:
        raise errors.BadRequest(f"Protocol {c.PROMETHEUS} listeners cannot have child objects.")
    if pool_protocol not in c.VALID_LISTENER_POOL_PROTOCOLS[listener_protocol]:
        raise errors.ValidationError(
            detail=f"The pool protocol '{pool_protocol}' is invalid while the listener "
                   f"protocol is '{listener_protocol}'.")

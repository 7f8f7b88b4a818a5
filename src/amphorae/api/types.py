"""Field types shared by the request schemas, with Octavia's constraints and messages."""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from pydantic import StrictInt as _StrictInt
from pydantic import StrictStr as _StrictStr

from amphorae.common import constants as c


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("Value should be UUID format") from None


def _ip(value: str) -> str:
    """The address in its canonical form (a VIP: Neutron answers it so)."""
    return str(ipaddress.ip_address(_ip_as_given(value)))


def _ip_as_given(value: str) -> str:
    """The address checked and kept as written (a member: Octavia stores it so)."""
    try:
        address = ipaddress.ip_address(value)
        if getattr(address, "scope_id", None) is not None:
            # 'fe80::1%eth0': a zone means nothing off this host and overflows the column.
            raise ValueError(value)
        return value
    except ValueError:
        raise ValueError("Value should be IPv4 or IPv6 format") from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError("Value should be a valid CIDR") from None


def _int_like(value: Any) -> Any:
    # WSME (so Octavia) takes integers sent as strings, and octaviaclient sends some that
    # way (e.g. a listener's connection_limit); booleans and floats stay refused.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        return int(value)
    return value


def _null_is_false(value: Any) -> Any:
    # Octavia reads admin_state_up: null as false.
    return False if value is None else value


def enum(*values: Any) -> Any:
    """A string (or int) that must be one of ``values``; the message lists them."""
    allowed = tuple(values)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"Value should be one of: {', '.join(str(v) for v in allowed)}")
        return value

    base = _StrictInt if all(isinstance(v, int) for v in allowed) else _StrictStr
    return Annotated[base, AfterValidator(check)]


StrictStr = _StrictStr
StrictInt = _StrictInt
IntLike = Annotated[_StrictInt, BeforeValidator(_int_like)]
Name = Annotated[_StrictStr, Field(max_length=255)]
Description = Annotated[_StrictStr, Field(max_length=255)]
ProjectId = Annotated[_StrictStr, Field(max_length=36)]
UUID = Annotated[_StrictStr, AfterValidator(_uuid)]
IPAddress = Annotated[_StrictStr, AfterValidator(_ip)]
IPAddressAsGiven = Annotated[_StrictStr, AfterValidator(_ip_as_given)]
CIDR = Annotated[_StrictStr, AfterValidator(_cidr)]
AdminState = Annotated[StrictBool, BeforeValidator(_null_is_false)]
Port = Annotated[IntLike, Field(ge=c.MIN_PORT, le=c.MAX_PORT)]
Timeout = Annotated[IntLike, Field(ge=c.MIN_TIMEOUT, le=c.MAX_TIMEOUT)]
Tag = Annotated[_StrictStr, Field(max_length=255)]
Tags = list[Tag]
ContainerRef = Annotated[_StrictStr, Field(max_length=255)]
Ciphers = Annotated[_StrictStr, Field(max_length=2048)]
TLSVersion = Annotated[_StrictStr, Field(max_length=32), AfterValidator(
    lambda v: v if v in c.TLS_VERSIONS else _raise(
        f"Value should be one of: {', '.join(c.TLS_VERSIONS)}"))]
ALPN = Annotated[_StrictStr, Field(max_length=32), AfterValidator(
    lambda v: v if v in c.ALPN_PROTOCOLS else _raise(
        f"Value should be one of: {', '.join(c.ALPN_PROTOCOLS)}"))]

_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")


def _raise(message: str) -> Any:
    raise ValueError(message)


class Schema(BaseModel):
    """Base of every request body: unknown attributes are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def given(self) -> dict[str, Any]:
        """The fields the client actually sent (PUT semantics)."""
        return {name: getattr(self, name) for name in self.model_fields_set}

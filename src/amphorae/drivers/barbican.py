"""Octavia's ``barbican_cert_manager``: listener and pool certificates kept in Barbican.

References are Barbican's (the URL, or its last segment, a UUID):

- a *certificate container* (``…/containers/<uuid>``) whose secrets are named
  ``certificate``, ``private_key`` and optionally ``intermediates`` and
  ``private_key_passphrase``, all PEM (Octavia's legacy layout);
- a *secret* (``…/secrets/<uuid>``) holding a PKCS#12 bundle without a passphrase
  (Octavia's current layout); a bare UUID is tried as a secret, then as a container;
- CA certificates and CRLs are secrets holding PEM.

Who reads (as Octavia's ``barbican_acl_auth``): the API reads a reference with the
requesting user's own token, so a user can only use what Barbican lets them read; it then
adds the service user to the read ACL of the reference (and of each secret of a
container), with the user's token too, so the worker, which reads as the service user
(``[service_auth]``), can read it later. Only the UUID of a reference is used: requests go
to the Barbican endpoint of the service catalog, never to a host a user wrote in a URL.
What is read is parsed by common/cert_manager.py's parsers, with its reasons.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from cryptography.hazmat.primitives.serialization import pkcs12
from keystoneauth1 import adapter, session, token_endpoint
from keystoneauth1 import exceptions as ks_exc
from oslo_config import cfg

from amphorae.common import config
from amphorae.common.cert_manager import (
    CertificateError,
    Context,
    Parts,
    TLSCert,
    parse_ca,
    parse_cert,
    parse_crl,
    tls_cert,
)
from amphorae.drivers import cloud

SERVICE_TYPE = "key-manager"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
SECRETS, CONTAINERS = "secrets", "containers"
# Octavia's endpoint_type values are the v2 catalog's.
_INTERFACES = {"publicURL": "public", "internalURL": "internal", "adminURL": "admin"}
CONTAINER_PARTS = Parts(cert="its certificate", key="its private_key",
                        chain="its intermediates", passphrase="private_key_passphrase")
PKCS12_PARTS = Parts(cert="the PKCS12 certificate", key="the PKCS12 key",
                     chain="the PKCS12 intermediates", passphrase="a passphrase")


@dataclasses.dataclass(frozen=True)
class _Ref:
    ref: str
    kind: str | None  # SECRETS, CONTAINERS, or None for a bare UUID
    uuid: str


def _parse_ref(ref: str) -> _Ref:
    parts = ref.rstrip("/").split("/")
    kind = parts[-2] if len(parts) > 1 else None
    if not _UUID.fullmatch(parts[-1]) or kind not in (None, SECRETS, CONTAINERS):
        raise CertificateError(ref, "not a Barbican secret or container reference")
    return _Ref(ref, kind, parts[-1].lower())


@dataclasses.dataclass(frozen=True)
class _Reader:
    """Barbican's v1 API as one identity: the requesting user or the service user."""

    session: session.Session
    endpoint: str  # …/v1
    who: str  # for reasons: "the requesting user", "the service user"

    def get(self, ref: str, path: str, what: str, **headers: str) -> Any:
        try:
            return self.session.get(f"{self.endpoint}/{path}", headers=headers or None)
        except ks_exc.NotFound:
            raise CertificateError(ref, f"{what} does not exist in Barbican") from None
        except (ks_exc.Forbidden, ks_exc.Unauthorized):
            raise CertificateError(ref, f"{self.who} may not read {what}") from None
        except ks_exc.ClientException as exc:
            raise CertificateError(ref, f"Barbican did not give {what}: {exc}") from None

    def payload(self, ref: str, uuid: str, what: str) -> bytes:
        """A secret's payload, asked for in the content type it was stored with."""
        meta = self.get(ref, f"{SECRETS}/{uuid}", what).json()
        content_type = (meta.get("content_types") or {}).get("default")
        if not content_type:
            raise CertificateError(ref, f"{what} has no payload")
        return bytes(self.get(ref, f"{SECRETS}/{uuid}/payload", what,
                              Accept=content_type).content)

    def container(self, ref: str, uuid: str) -> dict[str, str]:
        """The container's secrets: name -> secret UUID."""
        body = self.get(ref, f"{CONTAINERS}/{uuid}", "the container").json()
        return {s["name"]: str(s.get("secret_ref", "")).rstrip("/").rsplit("/", 1)[-1]
                for s in body.get("secret_refs") or [] if s.get("name")}


class BarbicanCertManager:
    def __init__(self, conf: cfg.ConfigOpts = config.CONF) -> None:
        self.conf = conf
        self._own: session.Session | None = None

    # -- what the API and the worker read ----------------------------------------------

    def get_cert(self, ref: str, context: Context | None = None) -> TLSCert:
        parsed = _parse_ref(ref)
        reader = self._reader(ref, context)
        if parsed.kind == CONTAINERS:
            return _container_cert(reader, parsed)
        if parsed.kind == SECRETS:
            return _pkcs12_cert(ref, reader.payload(ref, parsed.uuid, "the secret"))
        try:  # a bare UUID: a secret (Octavia's current layout), else a container
            payload = reader.payload(ref, parsed.uuid, "the secret")
        except CertificateError as exc:
            if not exc.reason.endswith("does not exist in Barbican"):
                raise
            return _container_cert(reader, parsed)
        return _pkcs12_cert(ref, payload)

    def get_ca(self, ref: str, context: Context | None = None) -> bytes:
        return parse_ca(ref, "the secret", self._secret(ref, context))

    def get_crl(self, ref: str, context: Context | None = None) -> bytes:
        return parse_crl(ref, "the secret", self._secret(ref, context))

    def set_acls(self, ref: str, context: Context) -> None:
        """Add the service user to the read ACL of ``ref`` and, for a container, of its
        secrets, as the requesting user (Octavia's ``ensure_secret_access``)."""
        parsed = _parse_ref(ref)
        reader = self._reader(ref, context)
        kind = parsed.kind or self._kind(reader, parsed)
        targets = [f"{kind}/{parsed.uuid}"]
        if kind == CONTAINERS:
            targets += [f"{SECRETS}/{uuid}"
                        for uuid in reader.container(ref, parsed.uuid).values()]
        user_id = self._service_session().get_user_id()
        for target in targets:
            _grant_read(reader, ref, target, user_id)

    # -- plumbing ----------------------------------------------------------------------

    def _secret(self, ref: str, context: Context | None) -> bytes:
        parsed = _parse_ref(ref)
        if parsed.kind == CONTAINERS:
            raise CertificateError(ref, "a container: this reference must name a secret")
        return self._reader(ref, context).payload(ref, parsed.uuid, "the secret")

    def _kind(self, reader: _Reader, parsed: _Ref) -> str:
        try:
            reader.get(parsed.ref, f"{SECRETS}/{parsed.uuid}", "the secret")
        except CertificateError as exc:
            if not exc.reason.endswith("does not exist in Barbican"):
                raise
            return CONTAINERS
        return SECRETS

    def _service_session(self) -> session.Session:
        """The process's service-user session (one login, shared with the other cloud
        drivers); a manager made for another configuration logs in once by itself."""
        if self.conf is config.CONF:
            return cloud.shared_connection().session
        if self._own is None:
            self._own = cloud.connection(self.conf).session
        return self._own

    def _reader(self, ref: str, context: Context | None) -> _Reader:
        """The worker (no context) reads as the service user; the API as the user."""
        service = self._service_session()
        try:
            endpoint = _endpoint(self.conf, service)
        except ks_exc.ClientException as exc:
            raise CertificateError(ref, f"no Barbican endpoint: {exc}") from None
        if context is None:
            return _Reader(service, endpoint, "the service user")
        if not context.auth_token:
            raise CertificateError(ref, "the request has no Keystone token to read it with "
                                        "(Barbican needs [api_settings] auth_strategy = "
                                        "keystone)")
        user = session.Session(auth=token_endpoint.Token(endpoint, context.auth_token),
                               verify=service.verify, cert=service.cert,
                               timeout=service.timeout)
        return _Reader(user, endpoint, "the requesting user")


def _endpoint(conf: cfg.ConfigOpts, service: session.Session) -> str:
    """Barbican's v1 URL: Octavia's ``[certificates]`` options, and where they say
    nothing, the ``[barbican]`` adapter group's."""
    return _cached_endpoint(
        service, conf.barbican.service_type or SERVICE_TYPE,
        conf.certificates.service_name or conf.barbican.service_name,
        _INTERFACES.get(conf.certificates.endpoint_type, conf.certificates.endpoint_type),
        conf.certificates.region_name or conf.barbican.region_name,
        conf.certificates.endpoint or conf.barbican.endpoint_override)


@functools.lru_cache(maxsize=8)
def _cached_endpoint(service: session.Session, service_type: str, service_name: str | None,
                     interface: str, region: str | None, override: str | None) -> str:
    url = adapter.Adapter(session=service, service_type=service_type,
                          service_name=service_name, interface=interface,
                          region_name=region, endpoint_override=override).get_endpoint()
    if not url:
        raise ks_exc.EndpointNotFound(f"no {interface} {service_type} endpoint in the "
                                      "service catalog")
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _grant_read(reader: _Reader, ref: str, target: str, user_id: str) -> None:
    kind, uuid = target.split("/")
    what = f"the ACL of {kind[:-1]} {uuid}"
    url = f"{reader.endpoint}/{target}/acl"
    try:
        users = list((reader.session.get(url).json().get("read") or {}).get("users") or [])
        if user_id not in users:  # PATCH keeps project-access, sets the users given
            reader.session.patch(url, json={"read": {"users": [*users, user_id]}})
    except (ks_exc.Forbidden, ks_exc.Unauthorized):
        raise CertificateError(ref, f"{reader.who} may not grant the service user read "
                                    f"access ({what})") from None
    except ks_exc.ClientException as exc:
        raise CertificateError(ref, f"Barbican did not set {what}: {exc}") from None


def _container_cert(reader: _Reader, parsed: _Ref) -> TLSCert:
    ref = parsed.ref
    secrets = reader.container(ref, parsed.uuid)
    for needed in ("certificate", "private_key"):
        if needed not in secrets:
            raise CertificateError(ref, f"the container has no {needed} secret")

    def read(name: str) -> bytes:
        uuid = secrets.get(name)
        return reader.payload(ref, uuid, f"its {name} secret") if uuid else b""

    passphrase = read("private_key_passphrase").strip() or None
    return parse_cert(ref, CONTAINER_PARTS, read("certificate"), read("private_key"),
                      read("intermediates"), passphrase)


def _pkcs12_cert(ref: str, payload: bytes) -> TLSCert:
    """Octavia stores bundles without a passphrase; openssl's empty one counts as none."""
    for password in (None, b""):
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(payload, password)
            break
        except ValueError:
            continue
    else:
        raise CertificateError(ref, "the secret is not a PKCS12 bundle readable without a "
                                    "passphrase")
    if cert is None or key is None:
        raise CertificateError(ref, "the PKCS12 bundle has no "
                                    f"{'certificate' if cert is None else 'private key'}")
    return tls_cert(ref, PKCS12_PARTS, cert, tuple(extra), key)

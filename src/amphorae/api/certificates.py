"""Certificate references in API requests must resolve, as Octavia checks them: a
reference the certificate manager cannot turn into a usable certificate is a 400 that
lists the bad references (Octavia's wording) and says, per field, why each failed.

A reference is read as the requesting user (their token, under keystone) and, once read,
opened to the control plane (``set_acls``: Barbican read ACLs for the service user), so
that the worker can read it later as itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from amphorae.api.context import RequestContext
from amphorae.common import errors
from amphorae.common.cert_manager import CertificateError, CertManager, Context
from amphorae.drivers import registry

# What each reference field holds: a certificate with its key, CA certificates, a CRL.
KINDS = {
    "default_tls_container_ref": "cert", "sni_container_refs": "cert",
    "tls_container_ref": "cert",
    "client_ca_tls_container_ref": "ca", "ca_tls_container_ref": "ca",
    "client_crl_container_ref": "crl", "crl_container_ref": "crl",
}


def _loader(manager: CertManager, field: str) -> Callable[[str, Context], object]:
    return {"cert": manager.get_cert, "ca": manager.get_ca,
            "crl": manager.get_crl}[KINDS[field]]


def check(refs: Mapping[str, str | Sequence[str] | None],
          ctx: RequestContext | None) -> None:
    """``refs``: field name -> the reference(s) the request sets in it; ``ctx``: who asks."""
    manager = registry.cert_manager()
    user = Context(project_id=ctx.project_id if ctx else None,
                   auth_token=ctx.auth_token if ctx else None)
    bad, reasons = [], []
    for field, value in refs.items():
        for ref in [value] if isinstance(value, str) or value is None else value:
            if not ref:
                continue
            try:
                _loader(manager, field)(ref, user)
                manager.set_acls(ref, user)
            except CertificateError as exc:
                bad.append(ref)
                reasons.append(f"{field} {ref}: {exc.reason}")
    if bad:
        raise errors.CertificateRetrieval(ref=bad, reasons="; ".join(reasons))

"""Certificate references in API requests must resolve, as Octavia checks them: a
reference the certificate manager cannot turn into a usable certificate is a 400 that
lists the bad references."""

from __future__ import annotations

from collections.abc import Iterable

from amphorae.common import errors
from amphorae.common.cert_manager import CertificateError
from amphorae.drivers import registry


def check(certs: Iterable[str | None] = (), cas: Iterable[str | None] = (),
          crls: Iterable[str | None] = ()) -> None:
    manager = registry.cert_manager()
    bad = []
    for load, refs in ((manager.get_cert, certs), (manager.get_ca, cas),
                       (manager.get_crl, crls)):
        for ref in refs:
            if not ref:
                continue
            try:
                load(ref)
            except CertificateError:
                bad.append(ref)
    if bad:
        raise errors.CertificateRetrieval(ref=bad)

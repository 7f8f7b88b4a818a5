"""Certificates in the local certificate manager's layout (common/cert_manager.py), for
tests: ``<ref>.crt`` + ``<ref>.key`` (+ ``.int``) for certificates, ``<ref>.crt`` holding
a CA certificate or a CRL for secrets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from amphorae.common import pki

VALIDITY = 3600
DIGEST = "sha256"
# The references the functional tests of listeners and pools use.
CERT_REFS = ("0b1c2d3e-cert", "sni-a", "sni-b", "s1", "s2", "s3", "client-cert")
CA_REFS = ("ca",)
CRL_REFS = ("crl", "crl2")


def store_cert(path: Path, ref: str, pair: pki.CertKey) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{ref}.crt").write_bytes(pair.cert_pem())
    (path / f"{ref}.key").write_bytes(pair.key_pem())


def store_ca(path: Path, ref: str, ca: pki.CertKey) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{ref}.crt").write_bytes(ca.cert_pem())


def store_crl(path: Path, ref: str, ca: pki.CertKey, revoked: Iterable[int] = ()) -> None:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now).next_update(now + dt.timedelta(seconds=VALIDITY)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
            .build())
    crl = builder.sign(ca.key, hashes.SHA256())
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{ref}.crt").write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def populate(path: Path) -> pki.CertKey:
    """Every reference the API tests use, issued by one CA (returned)."""
    ca = pki.create_ca("amphorae test TLS CA", validity=VALIDITY, digest=DIGEST)
    for ref in CERT_REFS:
        store_cert(path, ref, pki.issue_server_cert(ca, f"{ref}.example", validity=VALIDITY,
                                                    digest=DIGEST))
    for ref in CA_REFS:
        store_ca(path, ref, ca)
    for ref in CRL_REFS:
        store_crl(path, ref, ca)
    return ca

"""Where listener and pool certificates come from: Octavia's local certificate manager.

A reference names files in ``[certificates] storage_path`` (Octavia's layout):
``<ref>.crt`` (certificate, PEM), ``<ref>.key`` (private key), optionally ``<ref>.int``
(intermediates) and ``<ref>.pass`` (the key's passphrase). A reference that is a URL
(as Barbican's are) names the files by its last path segment. CA certificates and CRLs
are "secrets": the PEM text of ``<ref>.crt``.

Everything read is parsed here (``parse_cert``, ``parse_ca``, ``parse_crl``, which the
Barbican manager in drivers/barbican.py shares), so a reference that does not resolve to
a usable certificate fails with :class:`CertificateError` naming the reference: the API
refuses it with a 400, the worker puts the object using it in ERROR. The API reads with
a :class:`Context` (the requesting user), the worker without one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import os
import re
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from amphorae.common import config, pki

_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")

class CertificateError(Exception):
    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"certificate {ref}: {reason}")
        self.ref = ref
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class TLSCert:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key_pem: bytes  # unencrypted PKCS#8

    def bundle_pem(self) -> bytes:
        """Certificate, intermediates and key in one PEM, as HAProxy's crt wants it."""
        pems = [self.certificate.public_bytes(serialization.Encoding.PEM),
                *(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)]
        return b"".join(pems) + self.private_key_pem


@dataclasses.dataclass(frozen=True)
class Context:
    """Who asks: the API passes the requesting user's (their Keystone token, if the
    request came with one, and project); the worker passes none and reads as itself."""

    project_id: str | None
    auth_token: str | None = dataclasses.field(default=None, repr=False)


class CertManager(Protocol):
    """What the API (to check a reference, as the requesting user) and the worker (to
    ship it, with no context: as the control plane) read."""

    def get_cert(self, ref: str, context: Context | None = None) -> TLSCert: ...

    def get_ca(self, ref: str, context: Context | None = None) -> bytes: ...

    def get_crl(self, ref: str, context: Context | None = None) -> bytes: ...

    def set_acls(self, ref: str, context: Context) -> None:
        """Let the worker read ``ref`` later (the API calls it once the user's read
        succeeded); nothing to do where the worker reads the same store."""


@dataclasses.dataclass(frozen=True)
class Parts:
    """How reasons name the parts of a certificate: files of the local store, secrets of
    a Barbican container."""

    cert: str
    key: str
    chain: str
    passphrase: str

    @classmethod
    def files(cls, name: str) -> Parts:
        return cls(f"{name}.crt", f"{name}.key", f"{name}.int (intermediates)",
                   f"{name}.pass")


def parse_cert(ref: str, parts: Parts, cert_pem: bytes, key_pem: bytes,
               chain_pem: bytes = b"", passphrase: bytes | None = None) -> TLSCert:
    """The certificate, its intermediates and its key from PEM, checked to belong
    together; what is wrong is said in terms of ``parts``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CertificateError(ref, f"{parts.cert} is not a PEM certificate") from None
    try:
        chain = tuple(x509.load_pem_x509_certificates(chain_pem)) if chain_pem.strip() else ()
    except ValueError:
        raise CertificateError(
            ref, f"{parts.chain} is not a chain of PEM certificates"
        ) from None
    return tls_cert(ref, parts, cert, chain, _private_key(ref, parts, key_pem, passphrase))


def tls_cert(ref: str, parts: Parts, cert: x509.Certificate,
             chain: tuple[x509.Certificate, ...], key: Any) -> TLSCert:
    """``key`` checked to be usable by HAProxy and to be ``cert``'s."""
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateError(ref, f"the private key in {parts.key} is neither RSA nor EC")
    if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise CertificateError(
            ref, f"the private key in {parts.key} does not match the certificate in "
                 f"{parts.cert}")
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return TLSCert(cert, chain, key_pem)


def parse_ca(ref: str, label: str, pem: bytes) -> bytes:
    """PEM of one or more CA certificates, re-encoded."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CertificateError(
            ref, f"{label} is not one or more PEM CA certificates") from None
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def parse_crl(ref: str, label: str, pem: bytes) -> bytes:
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise CertificateError(
            ref, f"{label} is not a PEM certificate revocation list") from None
    return crl.public_bytes(serialization.Encoding.PEM)


class LocalCertManager:
    def __init__(self, storage_path: str | None = None) -> None:
        self.path = (storage_path or config.CONF.certificates.storage_path
                     or os.path.join(config.state_path(), "certificates"))
        # The operator's store from the first use on (the worker's start, the API's
        # first check), private as the keys in it; one that cannot be made is reported
        # as the missing files it would hold.
        with contextlib.suppress(OSError):
            os.makedirs(self.path, mode=0o700, exist_ok=True)

    def get_cert(self, ref: str, context: Context | None = None) -> TLSCert:
        """The certificate, its intermediates and its key, checked to belong together."""
        name = _name(ref)
        cert_pem = self._read(ref, name, ".crt")
        chain_pem = self._read(ref, name, ".int", optional=True)
        passphrase = self._read(ref, name, ".pass", optional=True).strip() or None
        return parse_cert(ref, Parts.files(name), cert_pem, self._read(ref, name, ".key"),
                          chain_pem, passphrase)

    def get_ca(self, ref: str, context: Context | None = None) -> bytes:
        """PEM of one or more CA certificates."""
        name = _name(ref)
        return parse_ca(ref, f"{name}.crt", self._read(ref, name, ".crt"))

    def get_crl(self, ref: str, context: Context | None = None) -> bytes:
        name = _name(ref)
        return parse_crl(ref, f"{name}.crt", self._read(ref, name, ".crt"))

    def set_acls(self, ref: str, context: Context) -> None:
        """The worker reads the same files."""

    def _read(self, ref: str, name: str, suffix: str, optional: bool = False) -> bytes:
        try:
            with open(os.path.join(self.path, name + suffix), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            if optional:
                return b""
            raise CertificateError(
                ref, f"no file {name}{suffix} in the certificate store") from None
        except OSError as exc:
            raise CertificateError(ref, f"cannot read {name}{suffix}: {exc}") from None


def _name(ref: str) -> str:
    """The file stem a reference names (a URL's last path segment)."""
    name = ref.rstrip("/").rsplit("/", 1)[-1]
    if not _REF.fullmatch(name):
        raise CertificateError(ref, "not a certificate reference")
    return name


def _private_key(ref: str, parts: Parts, pem: bytes, passphrase: bytes | None) -> Any:
    """The key, decrypted with the passphrase if there is one; what went wrong, said in
    terms of ``parts``."""
    try:
        return serialization.load_pem_private_key(pem, passphrase)
    except (ValueError, TypeError):
        pass
    encrypted = b"ENCRYPTED" in pem  # PKCS#8's "ENCRYPTED PRIVATE KEY", PKCS#1's Proc-Type
    if b"PRIVATE KEY-----" not in pem:
        reason = f"{parts.key} is not a PEM private key"
    elif encrypted and passphrase is None:
        reason = f"the private key in {parts.key} is encrypted and there is no {parts.passphrase}"
    elif encrypted:
        reason = f"the passphrase in {parts.passphrase} does not decrypt {parts.key}"
    elif passphrase is not None:
        reason = f"{parts.passphrase} is given but the private key in {parts.key} is not encrypted"
    else:
        reason = f"the private key in {parts.key} does not parse"
    raise CertificateError(ref, reason)


class NoopCertManager:
    """Octavia's ``noop_cert_manager``: any reference is one made-up certificate, for
    running the API with the no-op drivers (nothing ever serves it)."""

    def get_cert(self, ref: str, context: Context | None = None) -> TLSCert:
        ca = _noop_ca()
        return TLSCert(ca.cert, (), ca.key_pem())

    def get_ca(self, ref: str, context: Context | None = None) -> bytes:
        return _noop_ca().cert_pem()

    def get_crl(self, ref: str, context: Context | None = None) -> bytes:
        ca = _noop_ca()
        now = dt.datetime.now(dt.UTC)
        crl = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject).last_update(now)
               .next_update(now + dt.timedelta(days=1))
               .sign(ca.key, ca.cert.signature_hash_algorithm))
        return crl.public_bytes(serialization.Encoding.PEM)

    def set_acls(self, ref: str, context: Context) -> None:
        """Nothing is stored anywhere."""


@functools.cache
def _noop_ca() -> pki.CertKey:
    return pki.create_ca("amphorae noop certificate")

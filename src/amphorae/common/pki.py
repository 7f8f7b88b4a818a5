"""The local CA behind the agent's mutual TLS (its TLS contexts: common/tls.py).

The controller keeps one CA. For each amphora it issues a server certificate whose
common name and DNS name are the amphora id (the controller checks that name, not the
address, reference §4.1), plus the management IP as an IP address name. The controller
itself presents a client certificate from the same CA, and the agent requires one.

Keys are EC P-256 rather than Octavia's RSA 2048: a whole issuance (key, signature) takes
about 0.1 ms, where generating an RSA 2048 key alone takes tens of milliseconds (30 ms
median, 90 ms at worst, on the 2-core development machine). A certificate is issued on
every amphora creation and failover, so this is on the path to "amphora ready".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PathLike = str | os.PathLike[str]

CA_VALIDITY = 10 * 365 * 24 * 3600
# Certificates start a little in the past so that an amphora whose clock lags the
# controller's by a few minutes still accepts them at once.
BACKDATE = dt.timedelta(minutes=5)
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def bundle_pem(self) -> bytes:
        """Certificate then key in one file, as the agent's server.pem holds them."""
        return self.cert_pem() + self.key_pem()


# -- issuing -------------------------------------------------------------------------

def _settings(validity: int | None, digest: str | None) -> tuple[int, hashes.HashAlgorithm]:
    if validity is None or digest is None:
        from amphorae.common.config import CONF  # only when the caller left it to config

        validity = CONF.certificates.cert_validity_time if validity is None else validity
        digest = CONF.certificates.signing_digest if digest is None else digest
    if validity <= 0:
        raise ValueError(f"certificate validity must be positive, not {validity}")
    try:
        algorithm = _DIGESTS[digest.lower()]()
    except KeyError:
        raise ValueError(f"unsupported signing digest {digest!r}; "
                         f"use one of {', '.join(_DIGESTS)}") from None
    return validity, algorithm


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             validity: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(seconds=validity))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))


def create_ca(common_name: str = "amphorae agent CA", *, validity: int = CA_VALIDITY,
              digest: str | None = None) -> CertKey:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    validity, algorithm = _settings(validity, digest)
    key = _new_key()
    name = _name(common_name)
    cert = (_builder(name, name, key, validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, algorithm))
    return CertKey(cert, key)


def _issue(ca: CertKey, common_name: str, usage: x509.ObjectIdentifier,
           names: list[x509.GeneralName], validity: int | None,
           digest: str | None) -> CertKey:
    validity, algorithm = _settings(validity, digest)
    key = _new_key()
    builder = (_builder(_name(common_name), ca.cert.subject, key, validity)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               # The usage keeps a server certificate from serving as a client one and back.
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return CertKey(builder.sign(ca.key, algorithm), key)


def issue_server_cert(ca: CertKey, amphora_id: str, management_ip: str | None = None, *,
                      validity: int | None = None, digest: str | None = None) -> CertKey:
    """The agent's certificate: CN and DNS name = amphora id, IP name = management IP.

    ``validity`` (seconds) and ``digest`` default to ``[certificates] cert_validity_time``
    and ``signing_digest``.
    """
    names: list[x509.GeneralName] = [x509.DNSName(amphora_id)]
    if management_ip:
        names.append(x509.IPAddress(ipaddress.ip_address(management_ip)))
    return _issue(ca, amphora_id, ExtendedKeyUsageOID.SERVER_AUTH, names, validity, digest)


def issue_client_cert(ca: CertKey, common_name: str = "amphorae controller", *,
                      validity: int | None = None, digest: str | None = None) -> CertKey:
    """The controller's certificate for talking to agents."""
    return _issue(ca, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], validity, digest)


def cert_expiration(cert: x509.Certificate | bytes) -> dt.datetime:
    """When ``cert`` (object or PEM) expires, as naive UTC like the database columns."""
    if isinstance(cert, bytes):
        cert = x509.load_pem_x509_certificate(cert)
    return cert.not_valid_after_utc.replace(tzinfo=None)


# -- files ---------------------------------------------------------------------------

def _write(path: PathLike, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) with ``mode`` set before any byte lands."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(pair: CertKey, cert_path: PathLike, key_path: PathLike) -> None:
    """Certificate (0644) and key (0600) in two PEM files."""
    _write(key_path, pair.key_pem(), 0o600)
    _write(cert_path, pair.cert_pem(), 0o644)


def save_bundle(pair: CertKey, path: PathLike) -> None:
    """Certificate and key in one PEM file (0600), the agent's server.pem layout."""
    _write(path, pair.bundle_pem(), 0o600)


def save_cert(cert: x509.Certificate, path: PathLike) -> None:
    """A certificate alone (a CA file for the other side to trust)."""
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load(cert_path: PathLike, key_path: PathLike | None = None) -> CertKey:
    """A pair from two files, or from one bundle when ``key_path`` is omitted."""
    cert_data = Path(cert_path).read_bytes()
    key_data = Path(key_path).read_bytes() if key_path is not None else cert_data
    cert = x509.load_pem_x509_certificate(cert_data)
    key = serialization.load_pem_private_key(key_data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path or cert_path}: not an EC private key")
    if key.public_key() != cert.public_key():
        raise ValueError(f"{key_path or cert_path}: key does not match the certificate")
    return CertKey(cert, key)


def load_cert(path: PathLike) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_or_create_ca(directory: PathLike, common_name: str = "amphorae agent CA") -> CertKey:
    """The CA kept in ``directory`` as ca.pem + ca.key, created on first use."""
    folder = Path(directory)
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if cert_path.exists() and key_path.exists():
        return load(cert_path, key_path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = create_ca(f"{common_name} {uuid.uuid4().hex[:8]}")
    save(ca, cert_path, key_path)
    return ca

"""A certificate reference that does not resolve is a 400 that says why, per field: the
file that is missing, a file that is not PEM, a key that does not match its certificate
or cannot be decrypted, unreadable intermediates. And the local certificate manager's
store exists from its first use on, private (0700). Real `amphorae api` on SQLite and
PostgreSQL, real certificates written into its store."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from amphorae.common import pki
from tests import certstore, servers

L = "/v2/lbaas/listeners"


def store(server: servers.Server) -> Path:
    return server.config_file.parent / "certificates"


def issue() -> pki.CertKey:
    ca = pki.create_ca("amphorae test TLS CA", validity=3600, digest="sha256")
    return pki.issue_server_cert(ca, "web.example", validity=3600, digest="sha256")


def https(api: servers.Client, lb_id: str, **refs: object) -> tuple[int, str]:
    status, out = api.post(L, {"listener": {
        "loadbalancer_id": lb_id, "protocol": "TERMINATED_HTTPS", "protocol_port": 443,
        **refs}})
    return status, out.get("faultstring", out)


def broken(server: servers.Server, damage: Callable[[Path, str], None]) -> str:
    """A fresh reference stored whole, then damaged."""
    ref = f"amph-{uuid.uuid4().hex[:8]}"
    certstore.store_cert(store(server), ref, issue())
    damage(store(server), ref)
    return ref


def test_each_broken_certificate_says_why(api: servers.Client, server: servers.Server):
    lb = api.create_lb()
    pair = issue()
    encrypted = pair.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"right"))

    def encrypt(path: Path, ref: str, passphrase: bytes | None) -> None:
        (path / f"{ref}.crt").write_bytes(pair.cert_pem())
        (path / f"{ref}.key").write_bytes(encrypted)
        if passphrase is not None:
            (path / f"{ref}.pass").write_bytes(passphrase + b"\n")

    cases: list[tuple[Callable[[Path, str], None], str]] = [
        (lambda p, r: (p / f"{r}.key").unlink(), "no file {ref}.key in the certificate store"),
        (lambda p, r: (p / f"{r}.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n"),
         "{ref}.crt is not a PEM certificate"),
        (lambda p, r: (p / f"{r}.key").write_text("a key\n"), "{ref}.key is not a PEM private key"),
        (lambda p, r: (p / f"{r}.key").write_bytes(issue().key_pem()),
         "the private key in {ref}.key does not match the certificate in {ref}.crt"),
        (lambda p, r: encrypt(p, r, None),
         "the private key in {ref}.key is encrypted and there is no {ref}.pass"),
        (lambda p, r: encrypt(p, r, b"wrong"),
         "the passphrase in {ref}.pass does not decrypt {ref}.key"),
        (lambda p, r: (p / f"{r}.int").write_text("-----BEGIN CERTIFICATE-----\nxx\n"),
         "{ref}.int (intermediates) is not a chain of PEM certificates"),
    ]
    for damage, reason in cases:
        ref = broken(server, damage)
        assert https(api, lb["id"], default_tls_container_ref=ref) == (400, (
            f"Could not retrieve certificate: ['{ref}'] (default_tls_container_ref {ref}: "
            f"{reason.format(ref=ref)})"))
    # The right passphrase opens the key: the reference is good.
    good = broken(server, lambda p, r: encrypt(p, r, b"right"))
    status, _ = https(api, lb["id"], default_tls_container_ref=good, protocol_port=8443)
    assert status == 201
    api.settle(lb["id"])


def test_every_bad_field_is_named(api: servers.Client, server: servers.Server) -> None:
    lb = api.create_lb()
    good = broken(server, lambda p, r: None)
    url = "https://barbican.example/v1/containers/amph-nothing-here"
    assert https(api, lb["id"], default_tls_container_ref=good,
                 sni_container_refs=[good, url], client_ca_tls_container_ref="amph-no-ca") \
        == (400, f"Could not retrieve certificate: ['{url}', 'amph-no-ca'] "
                 f"(sni_container_refs {url}: no file amph-nothing-here.crt in the "
                 "certificate store; client_ca_tls_container_ref amph-no-ca: no file "
                 "amph-no-ca.crt in the certificate store)")
    (store(server) / "amph-bad-crl.crt").write_bytes(issue().cert_pem())  # not a CRL
    status, out = api.post("/v2/lbaas/pools", {"pool": {
        "loadbalancer_id": lb["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
        "ca_tls_container_ref": "ca", "crl_container_ref": "amph-bad-crl",
        "tls_container_ref": "amph-none"}})
    assert (status, out["faultstring"]) == (400, (
        "Could not retrieve certificate: ['amph-none', 'amph-bad-crl'] (tls_container_ref "
        "amph-none: no file amph-none.crt in the certificate store; crl_container_ref "
        "amph-bad-crl: amph-bad-crl.crt is not a PEM certificate revocation list)"))


def test_the_store_is_made_private_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "certs" / "store"
    extra = f"[certificates]\nstorage_path = {path}\n"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api("sqlite", tmp_path, f"certstore_{worker}", extra) as srv:
        api = servers.Client(srv)
        lb = api.create_lb()
        assert https(api, lb["id"], default_tls_container_ref="amph-web") == (400, (
            "Could not retrieve certificate: ['amph-web'] (default_tls_container_ref "
            "amph-web: no file amph-web.crt in the certificate store)"))
        assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o700
        # The operator puts the files there: the same request now succeeds.
        certstore.store_cert(path, "amph-web", issue())
        assert https(api, lb["id"], default_tls_container_ref="amph-web")[0] == 201

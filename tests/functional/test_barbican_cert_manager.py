"""The Barbican certificate manager (drivers/barbican.py) against the real Keystone and
Barbican of tests/cloud.py: project-a-member stores certificates as Octavia's users do (a
certificate container, a PKCS12 secret, CA and CRL secrets); the manager reads them with
that user's token; the service user can read them only once set_acls granted it; another
project's user is refused; broken references fail with a reason. Everything a test stores
is named amph-barbican-<hex>-… and deleted afterwards (ACLs go with their secret)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from oslo_config import cfg
from sqlalchemy.orm import Session

from amphorae.common import config, pki
from amphorae.common.cert_manager import CertificateError, Context
from amphorae.drivers import barbican
from amphorae.drivers import cloud as cloud_conf
from amphorae.worker import certificates
from tests import cloud as osdev
from tests import settle

VALIDITY = 3600


def _uuid(ref: str) -> str:
    return ref.rstrip("/").rsplit("/", 1)[-1]


class Store:
    """What one test stores in Barbican as one user, all deleted by ``clean``."""

    def __init__(self, conn: openstack.connection.Connection) -> None:
        self.conn = conn
        self.prefix = f"amph-barbican-{uuid.uuid4().hex[:8]}"
        self.secrets: list[str] = []
        self.containers: list[str] = []

    def secret(self, label: str, payload: bytes, binary: bool = False) -> str:
        args: dict[str, Any] = (
            {"payload": base64.b64encode(payload).decode(), "payload_content_encoding": "base64",
             "payload_content_type": "application/octet-stream"} if binary
            else {"payload": payload.decode(), "payload_content_type": "text/plain"})
        ref = str(self.conn.key_manager.create_secret(
            name=f"{self.prefix}-{label}", secret_type="opaque", **args).secret_ref)
        self.secrets.append(ref)
        return ref

    def container(self, label: str, **parts: bytes) -> str:
        refs = [{"name": name, "secret_ref": self.secret(f"{label}-{name}", pem)}
                for name, pem in parts.items()]
        ref = str(self.conn.key_manager.create_container(
            name=f"{self.prefix}-{label}", type="certificate", secret_refs=refs).container_ref)
        self.containers.append(ref)
        return ref

    def left(self) -> list[str]:
        """Names of this test's objects still in Barbican (every page of both lists)."""
        base = self.conn.session.get_endpoint(service_type="key-manager",
                                              interface="public").rstrip("/") + "/v1"
        names = []
        for kind in ("secrets", "containers"):
            url: str | None = f"{base}/{kind}?limit=100"
            while url:
                body = self.conn.session.get(url).json()
                names += [x.get("name") or "" for x in body[kind]]
                url = body.get("next")
        return [name for name in names if name.startswith(self.prefix)]

    def clean(self) -> None:
        for ref in self.containers:
            self.conn.key_manager.delete_container(_uuid(ref), ignore_missing=True)
        for ref in self.secrets:
            self.conn.key_manager.delete_secret(_uuid(ref), ignore_missing=True)


@pytest.fixture
def store(cloud: osdev.Cloud) -> Iterator[Store]:
    made = Store(cloud.connect())
    try:
        yield made
    finally:
        made.clean()
    assert made.left() == []


def manager_conf(tmp_path: pathlib.Path, cloud: osdev.Cloud, extra: str = "") -> cfg.ConfigOpts:
    """Octavia's options in a file, as an operator writes them."""
    path = tmp_path / "amphorae.conf"
    path.write_text(f"""
[service_auth]
{cloud.service_login()}
[certificates]
cert_manager = barbican_cert_manager
region_name = {osdev.REGION}
endpoint_type = internalURL
{extra}
""")
    conf = cfg.ConfigOpts()
    config.register(conf)
    cloud_conf.register(conf)
    conf(["--config-file", str(path)], project="amphorae-test", default_config_files=[])
    return conf


@pytest.fixture
def manager(cloud: osdev.Cloud, tmp_path: pathlib.Path) -> barbican.BarbicanCertManager:
    return barbican.BarbicanCertManager(manager_conf(tmp_path, cloud))


def context(conn: openstack.connection.Connection) -> Context:
    return Context(project_id=conn.current_project_id, auth_token=conn.session.get_token())


@pytest.fixture(scope="module")
def pki_set() -> dict[str, Any]:
    """A root, an intermediate CA and a server certificate it issued."""
    root = pki.create_ca("amphorae barbican root", validity=VALIDITY, digest="sha256")
    inter = pki.issue_server_cert(root, "amphorae barbican intermediate", validity=VALIDITY,
                                  digest="sha256")
    # An intermediate must be a CA: sign it again with the CA extension.
    now = dt.datetime.now(dt.UTC)
    inter_cert = (x509.CertificateBuilder().subject_name(inter.cert.subject)
                  .issuer_name(root.cert.subject).public_key(inter.key.public_key())
                  .serial_number(x509.random_serial_number()).not_valid_before(now)
                  .not_valid_after(now + dt.timedelta(seconds=VALIDITY))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .sign(root.key, hashes.SHA256()))
    inter_ca = pki.CertKey(inter_cert, inter.key)
    server = pki.issue_server_cert(inter_ca, "web.example", validity=VALIDITY, digest="sha256")
    crl = (x509.CertificateRevocationListBuilder().issuer_name(root.cert.subject)
           .last_update(now).next_update(now + dt.timedelta(seconds=VALIDITY))
           .sign(root.key, hashes.SHA256()))
    return {"root": root, "inter": inter_ca, "server": server,
            "crl": crl.public_bytes(serialization.Encoding.PEM)}


def encrypted_key(pair: pki.CertKey, passphrase: bytes) -> bytes:
    return pair.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(passphrase))


def acl_users(conn: openstack.connection.Connection, ref: str) -> list[str]:
    kind = "containers" if "/containers/" in ref else "secrets"
    url = f"{ref.rsplit('/', 2)[0]}/{kind}/{_uuid(ref)}/acl"
    return list(conn.session.get(url).json()["read"].get("users", []))


def test_a_container_is_read_as_the_user_and_by_the_service_after_set_acls(
        cloud: osdev.Cloud, store: Store, manager: barbican.BarbicanCertManager,
        pki_set: dict[str, Any]) -> None:
    server, inter = pki_set["server"], pki_set["inter"]
    ref = store.container("tls", certificate=server.cert_pem(),
                          private_key=encrypted_key(server, b"amph-secret"),
                          intermediates=inter.cert_pem(), private_key_passphrase=b"amph-secret")
    user = context(store.conn)
    cert = manager.get_cert(ref, user)
    assert cert.certificate == server.cert and cert.chain == (inter.cert,)
    assert serialization.load_pem_private_key(cert.private_key_pem, None).public_key() \
        .public_numbers() == server.key.public_key().public_numbers()
    # The worker reads as the service user: not before the API granted it read access.
    with pytest.raises(CertificateError, match="the service user may not read the container"):
        manager.get_cert(ref)
    # A bare UUID is a secret's or, failing that, a container's (Octavia's fallback).
    assert manager.get_cert(_uuid(ref), user).bundle_pem() == cert.bundle_pem()
    manager.set_acls(_uuid(ref), user)
    assert manager.get_cert(ref).bundle_pem() == cert.bundle_pem()
    service_id = cloud.service().current_user_id
    secrets = [s["secret_ref"] for s in store.conn.session.get(ref).json()["secret_refs"]]
    assert len(secrets) == 4
    for each in [ref, *secrets]:
        assert acl_users(store.conn, each) == [service_id]
    manager.set_acls(ref, user)  # again: nothing doubles
    assert acl_users(store.conn, ref) == [service_id]


def test_a_pkcs12_secret_by_url_or_uuid(cloud: osdev.Cloud, store: Store,
                                        manager: barbican.BarbicanCertManager,
                                        pki_set: dict[str, Any]) -> None:
    server, inter = pki_set["server"], pki_set["inter"]
    bundle = pkcs12.serialize_key_and_certificates(
        b"amph", server.key, server.cert, [inter.cert], serialization.NoEncryption())
    ref = store.secret("p12", bundle, binary=True)
    user = context(store.conn)
    for each in (ref, _uuid(ref)):
        cert = manager.get_cert(each, user)
        assert cert.certificate == server.cert and cert.chain == (inter.cert,)
    with pytest.raises(CertificateError, match="the service user may not read the secret"):
        manager.get_cert(ref)
    manager.set_acls(_uuid(ref), user)
    assert acl_users(store.conn, ref) == [cloud.service().current_user_id]
    assert manager.get_cert(ref).certificate == server.cert


def test_ca_and_crl_secrets(store: Store, manager: barbican.BarbicanCertManager,
                            pki_set: dict[str, Any]) -> None:
    root = pki_set["root"]
    ca_ref = store.secret("ca", root.cert_pem())
    crl_ref = store.secret("crl", pki_set["crl"])
    user = context(store.conn)
    assert manager.get_ca(ca_ref, user) == root.cert_pem()
    assert manager.get_crl(crl_ref, user) == pki_set["crl"]
    for ref in (ca_ref, crl_ref):
        manager.set_acls(ref, user)
    assert manager.get_ca(ca_ref) == root.cert_pem()
    assert manager.get_crl(crl_ref) == pki_set["crl"]
    with pytest.raises(CertificateError, match="the secret is not a PEM certificate "
                                               "revocation list"):
        manager.get_crl(ca_ref, user)


def test_another_projects_reference_is_refused(cloud: osdev.Cloud, store: Store,
                                               manager: barbican.BarbicanCertManager,
                                               pki_set: dict[str, Any]) -> None:
    server = pki_set["server"]
    ref = store.container("tls", certificate=server.cert_pem(), private_key=server.key_pem())
    other = context(cloud.connect("project-b-member", "project-b"))
    with pytest.raises(CertificateError) as caught:
        manager.get_cert(ref, other)
    assert (caught.value.ref, caught.value.reason) == (
        ref, "the requesting user may not read the container")
    with pytest.raises(CertificateError, match="the requesting user may not read"):
        manager.set_acls(ref, other)
    assert acl_users(store.conn, ref) == []
    # Without a token (auth_strategy other than keystone) nothing is read for a user.
    with pytest.raises(CertificateError, match="no Keystone token"):
        manager.get_cert(ref, Context(project_id=other.project_id))


def test_broken_references_say_why(store: Store, manager: barbican.BarbicanCertManager,
                                   pki_set: dict[str, Any]) -> None:
    server = pki_set["server"]
    user = context(store.conn)
    no_key = store.container("nokey", certificate=server.cert_pem())
    garbage = store.secret("garbage", b"\x00not a bundle\xff" * 8, binary=True)
    wrong = store.container("wrong", certificate=server.cert_pem(),
                            private_key=encrypted_key(server, b"right"),
                            private_key_passphrase=b"wrong")
    not_pem = store.container("notpem", certificate=b"hello", private_key=server.key_pem())
    other_key = store.container("otherkey", certificate=server.cert_pem(),
                                private_key=pki_set["root"].key_pem())
    missing = f"{no_key.rsplit('/', 1)[0]}/{uuid.uuid4()}"
    cases = {
        no_key: "the container has no private_key secret",
        garbage: "the secret is not a PKCS12 bundle readable without a passphrase",
        wrong: "the passphrase in private_key_passphrase does not decrypt its private_key",
        not_pem: "its certificate is not a PEM certificate",
        other_key: "the private key in its private_key does not match the certificate in "
                   "its certificate",
        missing: "the container does not exist in Barbican",
        "https://barbican.example/v1/orders/x": "not a Barbican secret or container reference",
    }
    for ref, reason in cases.items():
        with pytest.raises(CertificateError) as caught:
            manager.get_cert(ref, user)
        assert (caught.value.ref, caught.value.reason) == (ref, reason)
    with pytest.raises(CertificateError, match="a container: this reference must name a "
                                               "secret"):
        manager.get_ca(no_key, user)
    with pytest.raises(CertificateError,
                       match="the secret is not one or more PEM CA certificates"):
        manager.get_ca(garbage, user)


def test_the_barbican_group_and_endpoint_override_are_read(
        cloud: osdev.Cloud, store: Store, tmp_path: pathlib.Path,
        pki_set: dict[str, Any]) -> None:
    """[certificates] endpoint wins over the catalog; a wrong one is a reason, not a
    traceback."""
    ref = store.secret("ca", pki_set["root"].cert_pem())
    user = context(store.conn)
    good = barbican.BarbicanCertManager(manager_conf(
        tmp_path, cloud, "endpoint = http://127.0.0.1:15311\n"))
    assert good.get_ca(ref, user) == pki_set["root"].cert_pem()
    (tmp_path / "bad").mkdir()
    bad = barbican.BarbicanCertManager(manager_conf(
        tmp_path / "bad", cloud, "region_name = amph-nowhere\n"))
    with pytest.raises(CertificateError, match="no Barbican endpoint"):
        bad.get_ca(ref, user)


def test_the_api_checks_references_as_the_user(cloud: osdev.Cloud, store: Store,
                                               tmp_path: pathlib.Path,
                                               pki_set: dict[str, Any]) -> None:
    """`amphorae api` with keystone auth against the real Keystone: project-a-member's
    container makes a TERMINATED_HTTPS listener, whose files the worker (as the service
    user, through the ACLs the API set) then collects;
    project-b-member's reference is a 400 naming it."""
    from tests import servers

    service = cloud.service_login()
    extra = (f"cert_manager = barbican_cert_manager\nregion_name = {osdev.REGION}\n\n"
             "[api_settings]\nauth_strategy = keystone\n\n"
             f"[keystone_authtoken]\nwww_authenticate_uri = {cloud.auth_url}\n{service}"
             "service_token_roles_required = true\n\n"
             f"[service_auth]\n{service}")
    server = pki_set["server"]
    ref = store.container("api", certificate=server.cert_pem(), private_key=server.key_pem())
    other = Store(cloud.connect("project-b-member", "project-b"))
    try:
        theirs = other.container("api-b", certificate=server.cert_pem(),
                                 private_key=server.key_pem())
        with servers.running_api("sqlite", tmp_path, "barbican", extra) as srv:
            api = servers.Client(srv)
            api.http.headers["X-Auth-Token"] = store.conn.session.get_token()
            lb = api.create_lb()

            def listener(tls_ref: str, port: int) -> tuple[int, Any]:
                status, out = api.post("/v2/lbaas/listeners", {"listener": {
                    "loadbalancer_id": lb["id"], "protocol": "TERMINATED_HTTPS",
                    "protocol_port": port, "default_tls_container_ref": tls_ref}})
                return status, out

            status, out = listener(theirs, 443)
            assert (status, out.get("faultstring")) == (400, (
                f"Could not retrieve certificate: ['{theirs}'] (default_tls_container_ref "
                f"{theirs}: the requesting user may not read the container)"))
            status, out = listener(ref, 443)
            assert status == 201, out
            assert out["listener"]["default_tls_container_ref"] == ref
            # What the worker then does: collect the listener's files as the service user.
            (tmp_path / "worker").mkdir()
            worker = barbican.BarbicanCertManager(manager_conf(tmp_path / "worker", cloud))
            with Session(settle._engine(srv.db_url)) as session:
                tls = certificates.collect(session, lb["id"], worker)
            bundle = server.cert_pem() + server.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            assert (tls.failed, tls.files) == (
                {}, {hashlib.sha1(bundle).hexdigest() + ".pem": bundle})
        service_id = cloud.service().current_user_id
        secrets = [s["secret_ref"] for s in store.conn.session.get(ref).json()["secret_refs"]]
        for each in [ref, *secrets]:
            assert acl_users(store.conn, each) == [service_id]
    finally:
        other.clean()
    assert other.left() == []


def test_a_user_who_may_read_but_not_grant(cloud: osdev.Cloud, store: Store,
                                           manager: barbican.BarbicanCertManager,
                                           pki_set: dict[str, Any]) -> None:
    """project-b-member on the read ACLs of project-a's container reads it, but only its
    creator (or an admin) may change the ACLs: refused with the reason, ACL unchanged."""
    server = pki_set["server"]
    ref = store.container("tls", certificate=server.cert_pem(), private_key=server.key_pem())
    other = cloud.connect("project-b-member", "project-b")
    secrets = [s["secret_ref"] for s in store.conn.session.get(ref).json()["secret_refs"]]
    for each in [ref, *secrets]:
        store.conn.session.put(f"{each}/acl", json={"read": {"users": [other.current_user_id]}})
    assert manager.get_cert(ref, context(other)).certificate == server.cert
    with pytest.raises(CertificateError) as caught:
        manager.set_acls(ref, context(other))
    assert caught.value.reason.startswith(
        "the requesting user may not grant the service user read access")
    assert acl_users(store.conn, ref) == [other.current_user_id]

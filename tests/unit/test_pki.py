"""Local CA and the agent's mutual TLS, checked with real handshakes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import http.server
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amphorae.common import pki, tls

AMP = "0c6f3f39-8b1f-4b0e-9e7e-3a8f4c2d1b5a"
OTHER_AMP = "7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
TIMEOUT = 5.0


@pytest.fixture
def workdir():
    # Our own prefix, and removed whatever the outcome (pytest's tmp_path is kept).
    path = Path(tempfile.mkdtemp(prefix="amphorae-test-pki-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ca():
    return pki.create_ca(validity=3600, digest="sha256")


def _files(workdir: Path, name: str, pair: pki.CertKey) -> tuple[Path, Path]:
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    pki.save(pair, cert, key)
    return cert, key


@pytest.fixture
def setup(workdir, ca):
    """CA file, agent (server) and controller (client) certificate files."""
    ca_file = workdir / "ca.pem"
    pki.save_cert(ca.cert, ca_file)
    server = pki.issue_server_cert(ca, AMP, "127.0.0.1", validity=3600, digest="sha256")
    client = pki.issue_client_cert(ca, validity=3600, digest="sha256")
    return {"dir": workdir, "ca": ca_file,
            "server": _files(workdir, "server", server),
            "client": _files(workdir, "client", client)}


class TLSServer:
    """Accepts connections one at a time, answers b"pong" to a completed handshake."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.errors: list[Exception] = []
        self.peers: list[dict] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TLSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        # Wake the accept() up, then wait for the thread before closing its socket.
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self.thread.join(TIMEOUT)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stopping.is_set():
                conn.close()
                return
            conn.settimeout(TIMEOUT)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.peers.append(tls.getpeercert())
                    tls.recv(16)
                    tls.sendall(b"pong")
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(exc)
            finally:
                conn.close()


def _talk(context: ssl.SSLContext, port: int, server_hostname: str = "127.0.0.1") -> bytes:
    """Handshake, ping, and the answer. TLS 1.3 reports a refused client certificate
    only at the first read, so a refusal may surface here as an error or as no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname=server_hostname) as tls:
        tls.sendall(b"ping")
        return tls.recv(16)


def _refused(context: ssl.SSLContext, port: int, server_hostname: str = "127.0.0.1") -> bool:
    try:
        return _talk(context, port, server_hostname) != b"pong"
    except OSError:  # ssl.SSLError and ConnectionError included
        return True


def _server_context(setup) -> ssl.SSLContext:
    cert, key = setup["server"]
    return tls.server_ssl_context(cert, key, setup["ca"])


def _client_context(setup, expected: str = AMP) -> ssl.SSLContext:
    cert, key = setup["client"]
    return tls.client_ssl_context(cert, key, setup["ca"], expected)


# -- certificates --------------------------------------------------------------------

def test_ca(ca):
    cert = ca.cert
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert ca.key.curve.name == "secp256r1"


def test_server_cert_names_the_amphora(ca):
    pair = pki.issue_server_cert(ca, AMP, "198.18.0.10", validity=3600, digest="sha256")
    cert = pair.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == AMP
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [AMP]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.10"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == ca.cert.subject
    ca.cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                ec.ECDSA(cert.signature_hash_algorithm))


def test_server_cert_ipv6_and_without_ip(ca):
    v6 = pki.issue_server_cert(ca, AMP, "2001:db8::5", validity=60, digest="sha256").cert
    san = v6.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["2001:db8::5"]
    bare = pki.issue_server_cert(ca, AMP, validity=60, digest="sha256").cert
    san = bare.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == []


def test_client_cert(ca):
    cert = pki.issue_client_cert(ca, "controller-1", validity=60, digest="sha256").cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "controller-1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_validity_and_expiration(ca):
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    pair = pki.issue_server_cert(ca, AMP, validity=2592000, digest="sha256")
    expires = pki.cert_expiration(pair.cert)
    assert expires.tzinfo is None  # naive UTC, as the database keeps it
    delta = expires - before
    assert dt.timedelta(seconds=2592000 - 5) <= delta <= dt.timedelta(seconds=2592000 + 5)
    assert pki.cert_expiration(pair.cert_pem()) == expires
    assert pair.cert.not_valid_before_utc < dt.datetime.now(dt.UTC)


def test_validity_and_digest_from_config(ca):
    from amphorae.common.config import CONF

    CONF.set_override("cert_validity_time", 1234, group="certificates")
    CONF.set_override("signing_digest", "sha384", group="certificates")
    try:
        cert = pki.issue_server_cert(ca, AMP).cert
    finally:
        CONF.clear_override("cert_validity_time", group="certificates")
        CONF.clear_override("signing_digest", group="certificates")
    assert cert.signature_hash_algorithm.name == "sha384"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(seconds=1234) + pki.BACKDATE


@pytest.mark.parametrize("digest", ["md5", "sha1", "nonsense"])
def test_weak_or_unknown_digest_refused(ca, digest):
    with pytest.raises(ValueError):
        pki.issue_server_cert(ca, AMP, validity=60, digest=digest)


def test_nonpositive_validity_refused(ca):
    with pytest.raises(ValueError):
        pki.issue_client_cert(ca, validity=0, digest="sha256")


def test_issuing_is_fast(ca):
    count = 20
    start = time.perf_counter()
    for _ in range(count):
        pki.issue_server_cert(ca, AMP, "198.18.0.10", validity=3600, digest="sha256")
    per_cert = (time.perf_counter() - start) / count
    # EC P-256: well under a millisecond on this machine; the bound allows a busy CI box.
    assert per_cert < 0.05


# -- files ---------------------------------------------------------------------------

def test_save_and_load(workdir, ca):
    pair = pki.issue_server_cert(ca, AMP, "127.0.0.1", validity=60, digest="sha256")
    cert, key = _files(workdir, "amp", pair)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    loaded = pki.load(cert, key)
    assert loaded.cert == pair.cert
    assert loaded.key_pem() == pair.key_pem()
    assert pki.load_cert(cert) == pair.cert
    # Overwriting keeps the mode, and leaves no temporary file behind.
    pki.save(pair, cert, key)
    assert sorted(p.name for p in workdir.iterdir()) == ["amp.key", "amp.pem"]


def test_bundle(workdir, ca):
    pair = pki.issue_server_cert(ca, AMP, validity=60, digest="sha256")
    bundle = workdir / "server.pem"
    pki.save_bundle(pair, bundle)
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert pki.load(bundle).cert == pair.cert


def test_mismatched_key_refused(workdir, ca):
    one = pki.issue_client_cert(ca, validity=60, digest="sha256")
    two = pki.issue_client_cert(ca, validity=60, digest="sha256")
    cert, _ = _files(workdir, "one", one)
    _, key = _files(workdir, "two", two)
    with pytest.raises(ValueError):
        pki.load(cert, key)


def test_load_or_create_ca(workdir):
    folder = workdir / "ca"
    first = pki.load_or_create_ca(folder)
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    again = pki.load_or_create_ca(folder)
    assert again.cert == first.cert
    # Each new CA gets its own name, so two deployments' CAs are never confused.
    other = pki.load_or_create_ca(workdir / "other")
    assert other.cert.subject != first.cert.subject


# -- mutual TLS, for real ------------------------------------------------------------

def test_mutual_tls_succeeds(setup):
    with TLSServer(_server_context(setup)) as server:
        assert _talk(_client_context(setup), server.port) == b"pong"
    assert not server.errors
    subject = dict(item[0] for item in server.peers[0]["subject"])
    assert subject["commonName"] == "amphorae controller"


def test_refused_without_client_cert(setup):
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(cafile=setup["ca"])
    with TLSServer(_server_context(setup)) as server:
        assert _refused(bare, server.port, AMP)
    assert server.errors and not server.peers


def test_refused_with_cert_from_another_ca(setup):
    # Same CA name, other key: only the signature tells them apart.
    rogue_ca = pki.create_ca("amphorae agent CA", validity=3600, digest="sha256")
    rogue = pki.issue_client_cert(rogue_ca, validity=3600, digest="sha256")
    cert, key = _files(setup["dir"], "rogue", rogue)
    context = tls.client_ssl_context(cert, key, setup["ca"], AMP)
    with TLSServer(_server_context(setup)) as server:
        assert _refused(context, server.port)
    assert server.errors and not server.peers


def test_refused_with_a_server_cert_as_client_cert(setup, ca):
    # A certificate issued to an amphora cannot be used to drive another amphora.
    stolen = pki.issue_server_cert(ca, OTHER_AMP, validity=3600, digest="sha256")
    cert, key = _files(setup["dir"], "stolen", stolen)
    context = tls.client_ssl_context(cert, key, setup["ca"], AMP)
    with TLSServer(_server_context(setup)) as server:
        assert _refused(context, server.port)
    assert server.errors and not server.peers


def test_client_refuses_server_with_another_name(setup):
    # The server's certificate is valid for 127.0.0.1 (IP name) and AMP, but the
    # controller expects OTHER_AMP: refused, even though the address matches.
    with TLSServer(_server_context(setup)) as server, \
            pytest.raises(ssl.SSLCertVerificationError):
        _talk(_client_context(setup, expected=OTHER_AMP), server.port, "127.0.0.1")


def test_client_refuses_server_from_another_ca(setup):
    rogue_ca = pki.create_ca(validity=3600, digest="sha256")
    rogue = pki.issue_server_cert(rogue_ca, AMP, "127.0.0.1", validity=3600, digest="sha256")
    cert, key = _files(setup["dir"], "rogue-server", rogue)
    context = tls.server_ssl_context(cert, key, setup["ca"])
    with TLSServer(context) as server, pytest.raises(ssl.SSLCertVerificationError):
        _talk(_client_context(setup), server.port)


def test_context_settings(setup):
    server = _server_context(setup)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == ssl.CERT_REQUIRED
    client = _client_context(setup)
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname


def test_http_client_checks_the_amphora_id(setup):
    """An HTTP client connects to the management IP; the pinned name still applies."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"api_version": "1.0"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = _server_context(setup).wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                           context=_client_context(setup))
        conn.request("GET", "/")
        assert conn.getresponse().read() == b'{"api_version": "1.0"}'
        conn.close()
        wrong = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                            context=_client_context(setup, OTHER_AMP))
        with pytest.raises(ssl.SSLCertVerificationError):
            wrong.request("GET", "/")
        wrong.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)

"""The TLS contexts of both ends of the agent's mutual TLS (the standard library only:
the agent builds its context from here without loading cryptography, which pki needs to
issue certificates; see pki for the certificates themselves)."""

from __future__ import annotations

import os
import ssl

PathLike = str | os.PathLike[str]


def server_ssl_context(cert: PathLike, key: PathLike | None, client_ca: PathLike) -> ssl.SSLContext:
    """The agent's side: TLS 1.2+, and a client certificate from ``client_ca`` required.

    ``key`` may be None when ``cert`` is a bundle holding the key too.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    context.load_verify_locations(cafile=os.fspath(client_ca))
    return context


class _PinnedNameContext(ssl.SSLContext):
    """A client context that checks one fixed name, whatever address it connects to.

    HTTP clients pass the URL's host (the management IP) as the name to check; pinning
    it here makes any of them verify the amphora id instead, as Octavia's client does.
    """

    expected_hostname: str

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):  # type: ignore[override]
        return super().wrap_socket(sock, *args, server_hostname=self.expected_hostname,
                                   **kwargs)

    def wrap_bio(self, incoming, outgoing, *args, server_hostname=None,  # type: ignore[override]
                 **kwargs):
        return super().wrap_bio(incoming, outgoing, *args,
                                server_hostname=self.expected_hostname, **kwargs)


def client_ssl_context(cert: PathLike, key: PathLike | None, server_ca: PathLike,
                       expected_hostname: str) -> ssl.SSLContext:
    """The controller's side: presents its certificate, trusts only ``server_ca``, and
    accepts only a server certificate naming ``expected_hostname`` (the amphora id)."""
    context = _PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.expected_hostname = expected_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    context.load_verify_locations(cafile=os.fspath(server_ca))
    return context

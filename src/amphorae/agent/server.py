"""`amphorae agent`: the agent API over HTTPS with mutual TLS, on a threaded server from
the standard library (one thread per connection and one request per connection, as
wsgiref; the controller makes few calls)."""

from __future__ import annotations

import logging
import signal
import socket
import socketserver
import ssl
import sys
import threading
from typing import Any

from amphorae.agent import api, heartbeat, httpd, udp_health
from amphorae.agent import haproxy as hap
from amphorae.agent import keepalived as ka
from amphorae.agent import nftables as nft
from amphorae.common import tls

LOG = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 10.0


class TLSServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Accepts in the main thread; each connection's TLS handshake happens in its own
    thread, so a slow or hostile client cannot hold up the others."""

    daemon_threads = True
    allow_reuse_address = True
    ssl_context: ssl.SSLContext
    read_timeout: float = 180.0
    app: httpd.WsgiApp

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            LOG.info("TLS handshake with %s refused: %s", client_address[0], exc)
            return
        try:
            conn.settimeout(self.read_timeout)
            host, port = self.server_address[:2]
            httpd.exchange(self.app, conn, client_address, (str(host), int(port)))
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.exception("connection from %s failed", client_address[0])


class TLSServer6(TLSServer):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, app: httpd.WsgiApp, context: ssl.SSLContext,
                read_timeout: float = 180.0) -> TLSServer:
    server_class = TLSServer6 if ":" in host else TLSServer
    server = server_class((host, port), socketserver.BaseRequestHandler)
    server.app = app
    server.ssl_context = context
    server.read_timeout = read_timeout
    return server


def main(conf: Any) -> int:
    """``conf``: what options.load returns."""
    opts = conf.amphora_agent
    if not opts.amphora_id:
        LOG.warning("[amphora_agent] amphora_id is not set: no local peer name for HAProxy")
    try:
        context = tls.server_ssl_context(opts.agent_server_cert, None, opts.agent_server_ca)
    except (OSError, ssl.SSLError, ValueError) as exc:
        LOG.error("cannot load the agent certificate %s or client CA %s: %s",
                  opts.agent_server_cert, opts.agent_server_ca, exc)
        return 2
    sup = hap.Supervisor(opts.base_path, opts.haproxy_cmd, amphora_id=opts.amphora_id,
                         start_timeout=opts.haproxy_start_timeout,
                         stop_timeout=opts.haproxy_stop_timeout)
    sup.adopt()
    vrrp = ka.Keepalived(opts.base_path)
    rules = nft.Nftables(opts.base_path)
    udp = udp_health.UdpHealth(rules, opts.base_path)
    try:
        # As Octavia's agent: a configured keepalived that is down means no heartbeat, so
        # the controller fails this amphora over rather than trusting half of a pair.
        sender = heartbeat.from_config(
            conf, sup, may_send=lambda: not vrrp.has_config() or vrrp.running(),
            udp_pools=udp.pool_statuses)
    except ValueError as exc:
        LOG.error("invalid [health_manager] controller_ip_port_list: %s", exc)
        return 2
    try:
        app = api.create_app(sup, vrrp, rules, udp)
        server = make_server(opts.bind_host, opts.bind_port, app, context,
                             opts.agent_request_read_timeout)
    except OSError as exc:
        LOG.error("cannot listen on %s port %d: %s", opts.bind_host, opts.bind_port, exc)
        return 2

    def _shutdown(signum: int, _frame: Any) -> None:
        # HAProxy keeps running: like systemd units in Octavia, it outlives the agent.
        LOG.info("signal %d: agent stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    host, port = server.server_address[:2]
    LOG.info("amphora agent %s on https://%s:%d/%s/", opts.amphora_id, host, port,
             api.API_VERSION)
    sys.stdout.flush()
    if sender is not None:
        sender.start()
    udp.restore()  # the UDP health checks outlive an agent restart
    udp.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        if sender is not None:
            sender.stop()
        udp.stop()
        server.server_close()
    return 0

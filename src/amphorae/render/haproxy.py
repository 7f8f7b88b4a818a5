"""haproxy.cfg for one load balancer on one amphora: every TCP-family listener (HTTP,
HTTPS, TCP, TERMINATED_HTTPS, PROMETHEUS) in one file. UDP/SCTP listeners are not
HAProxy's; they go to nftables.

The shape follows Octavia's amphora template (reference §6.1) so that names keep their
meaning for the heartbeat: frontend = listener id, backend = ``<pool_id>:<listener_id>``,
server = member id. An admin-down load balancer renders only ``global`` and ``defaults``.
The agent starts it as a daemon (``haproxy -D``, agent/haproxy.py), so there is no ``daemon``.

Differences from Octavia, on purpose:
- L7 policies are all ``http-request`` rules, so they run in position order whatever
  their action. Octavia mixes ``http-request deny``, ``redirect`` and ``use_backend``,
  which HAProxy evaluates in fixed phases (every REJECT before any redirect, every
  redirect before any pool switch). A REDIRECT_TO_POOL policy stores its position in
  ``txn.l7policy``; later policies only run while that is unset; ``use_backend`` reads it.
- SOURCE_IP_PORT works (``balance hash`` of source address and port; Octavia's amphora
  refuses it). allowed_cidrs are enforced in HAProxy itself (Octavia: security groups).
  X-Forwarded-IP / X-Client-IP / X-Real-IP are inserted (Octavia accepts, then ignores).
- TLS 1.3 suite names of a cipher list go to ``ciphersuites`` (OpenSSL ignores them in
  ``ciphers``). A TLS-HELLO monitor completes a TLS handshake rather than a bare connect.
- ``hard-stop-after`` bounds how long old workers survive a reload; the stats socket is
  ``level admin`` (the agent drains and sets weights through it) and owner-only.
- ``option idle-close-on-response``: a reload does not close idle keep-alive client
  connections under a client about to reuse them; each gets its next answer, marked
  ``Connection: close``, from the old worker.
- Log formats and headers are written with every user-supplied value quoted, so spaces,
  ``#``, quotes and ``$`` in project ids, ACL values or redirect URLs cannot change the
  meaning of the file.
"""

from __future__ import annotations

import ipaddress

from amphorae.contract import model, pool_tags
from amphorae.contract.expected_codes import parse_expected_codes
from amphorae.render import haproxy_syntax as syn
from amphorae.render.haproxy_settings import AmphoraPaths, HaproxySettings

__all__ = ["AmphoraPaths", "HaproxySettings", "backend_name", "render"]

INDENT = "    "
LISTENER_MODES = {
    "HTTP": "http", "TERMINATED_HTTPS": "http", "PROMETHEUS": "http",
    "TCP": "tcp", "HTTPS": "tcp",
}
# PROXY and PROXYV2 pools take the listener's mode.
POOL_MODES = {"HTTP": "http", "HTTPS": "tcp", "TCP": "tcp"}
BALANCE = {"ROUND_ROBIN": "roundrobin", "LEAST_CONNECTIONS": "leastconn", "SOURCE_IP": "source"}
# The source port has no fetch that joins it to the address, so it goes through a variable.
SOURCE_PORT_VAR = "txn.src_port"
SOURCE_IP_PORT_BALANCE = f"hash src,concat(:,{SOURCE_PORT_VAR})"
CHECKED_MONITORS = ("HTTP", "HTTPS", "TCP", "TLS-HELLO", "PING")
COMPARE = {
    "REGEX": "-m reg", "STARTS_WITH": "-m beg", "ENDS_WITH": "-m end",
    "CONTAINS": "-m sub", "EQUAL_TO": "-m str",
}
CLIENT_VERIFY = {"NONE": "none", "OPTIONAL": "optional", "MANDATORY": "required"}
L7_VAR = "txn.l7policy"
PING_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PROMETHEUS_INTERNAL = "prometheus-exporter-internal-endpoint"
PROMETHEUS_SERVICE = (
    "http-request use-service prometheus-exporter if { path /metrics }",
    "http-request deny deny_status 404",
)
# Headers Octavia sets from the client connection (value "true" enables them).
SOURCE_HEADERS = ("X-Forwarded-IP", "X-Client-IP", "X-Real-IP")
SSL_HEADERS = (
    ("X-SSL-Client-Verify", "%[ssl_c_verify]"),
    ("X-SSL-Client-Has-Cert", "%[ssl_c_used]"),
    ("X-SSL-Client-DN", "%{+Q}[ssl_c_s_dn]"),
    ("X-SSL-Client-CN", "%{+Q}[ssl_c_s_dn(cn)]"),
    ("X-SSL-Issuer", "%{+Q}[ssl_c_i_dn]"),
    ("X-SSL-Client-SHA1", "%{+Q}[ssl_c_sha1,hex]"),
    ("X-SSL-Client-Not-Before", "%{+Q}[ssl_c_notbefore]"),
    ("X-SSL-Client-Not-After", "%{+Q}[ssl_c_notafter]"),
)
CIDRS_PER_LINE = 16
FD_RESERVE = 200


def render(lb: model.LoadBalancer, settings: HaproxySettings, paths: AmphoraPaths) -> str:
    """The whole haproxy.cfg of ``lb`` on one amphora."""
    listeners = [
        listener for listener in lb.listeners
        if listener.enabled and listener.protocol in LISTENER_MODES
    ] if lb.enabled else []
    pools = {listener.id: _listener_pools(lb, listener) for listener in listeners}
    used_pools = [pool for listener_pools in pools.values() for pool in listener_pools]
    peers = peers_name(lb) if lb.topology in PEER_TOPOLOGIES and lb.peers else None

    sections = [
        [f"# haproxy.cfg of load balancer {syn.name(lb.id, 'load balancer id')}"],
        _global(lb, listeners, used_pools, settings, paths),
        _defaults(settings),
    ]
    if lb.enabled:
        if peers:
            sections.append(_peers(lb, peers, settings))
        if paths.prometheus_port is not None:
            sections.append(_prometheus_internal(paths.prometheus_port))
        for listener in listeners:
            sections.append(_frontend(lb, listener, settings, paths))
            sections.extend(_backend(lb, listener, pool, settings, paths, peers)
                            for pool in pools[listener.id])
    return "\n".join("\n".join(section) for section in sections) + "\n"


def backend_name(pool_id: str, listener_id: str) -> str:
    """Octavia's backend name; the heartbeat splits it back into pool and listener."""
    if ":" in pool_id or ":" in listener_id:
        raise ValueError(f"ids in a backend name cannot hold ':': {pool_id!r}, {listener_id!r}")
    return f"{syn.name(pool_id, 'pool id')}:{syn.name(listener_id, 'listener id')}"


# Whose amphorae sync their stick tables: a pair's, and an ACTIVE_ACTIVE set's (the
# distributor may send a client's next connection to another amphora).
PEER_TOPOLOGIES = ("ACTIVE_STANDBY", "ACTIVE_ACTIVE")


def peers_name(lb: model.LoadBalancer) -> str:
    return syn.name(lb.id.replace("-", ""), "load balancer id") + "_peers"


def listener_maxconn(listener: model.Listener, settings: HaproxySettings) -> int:
    if listener.connection_limit > 0:
        return listener.connection_limit
    return settings.default_connection_limit


def global_maxconn(lb: model.LoadBalancer, listeners: list[model.Listener],
                   pools: list[model.Pool], settings: HaproxySettings) -> int:
    """Octavia's sum of the listeners' limits, capped by the settings and, when the
    amphora's descriptor limit is known, by what HAProxy can open under it."""
    total = sum(listener_maxconn(listener, settings) for listener in listeners)
    maxconn = min(total or settings.default_connection_limit, settings.max_connections)
    if settings.fd_limit:
        # Descriptors outside connections: listening sockets, health checks, peers,
        # stats and log sockets, and a margin for HAProxy's own files.
        reserve = (FD_RESERVE + len(listeners) * len(lb.vips) + len(lb.peers)
                   + sum(len(pool.members) for pool in pools))
        maxconn = min(maxconn, max(1, (settings.fd_limit - reserve) * 2 // 5))
    return maxconn


def host_port(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)  # refuses anything that is not an address
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}")
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _section(header: str, body: list[str]) -> list[str]:
    return ["", header, *(INDENT + line for line in body)]


# --- global, defaults, peers -------------------------------------------------------


def _global(lb: model.LoadBalancer, listeners: list[model.Listener], pools: list[model.Pool],
            settings: HaproxySettings, paths: AmphoraPaths) -> list[str]:
    body = []
    if settings.user:
        body.append(f"user {syn.quote(settings.user)}")
    if settings.group:
        body.append(f"group {syn.quote(settings.group)}")
    if paths.log_socket:
        log = syn.quote(paths.log_socket)
        body.append(f"log {log} local{settings.user_log_facility}")
        body.append(f"log {log} local{settings.administrative_log_facility} notice")
    body.append(f"stats socket {syn.quote(paths.stats_socket)} "
                "mode 600 level admin expose-fd listeners")
    if paths.server_state_file:
        body.append(f"server-state-file {syn.quote(paths.server_state_file)}")
    body.append(f"maxconn {global_maxconn(lb, listeners, pools, settings)}")
    if settings.hard_stop_after is not None:
        body.append(f"hard-stop-after {int(settings.hard_stop_after)}s")
    if settings.nbthread:
        body.append(f"nbthread {int(settings.nbthread)}")
    if any(listener.protocol == "TERMINATED_HTTPS" for listener in listeners):
        # Shared memory allocated at start: the bound keeps each worker's size known.
        body.append(f"tune.ssl.cachesize {int(settings.tls_session_cache_size)}")
    if any(_monitor_type(pool) == "PING" for pool in pools):
        # PING checks fork a script; HAProxy refuses to fork unless told it may.
        body += ["external-check", "insecure-fork-wanted"]
    return _section("global", body)


def _defaults(settings: HaproxySettings) -> list[str]:
    return _section("defaults", [
        "log global" if settings.connection_logging else "no log",
        "retries 3",
        "option redispatch",
        "option splice-request",
        "option splice-response",
        "option http-keep-alive",
    ])


def _peers(lb: model.LoadBalancer, peers: str, settings: HaproxySettings) -> list[str]:
    body = [f"peer {syn.name(peer.name, 'peer name')} "
            f"{host_port(peer.address, settings.peer_port)}" for peer in lb.peers]
    return _section(f"peers {peers}", body)


def _prometheus_internal(port: int) -> list[str]:
    return _section(f"frontend {PROMETHEUS_INTERNAL}", [
        f"bind {host_port('127.0.0.1', port)}",
        "mode http",
        "no log",
        "timeout client 5s",
        *PROMETHEUS_SERVICE,
    ])


# --- frontends ---------------------------------------------------------------------


def _frontend(lb: model.LoadBalancer, listener: model.Listener,
              settings: HaproxySettings, paths: AmphoraPaths) -> list[str]:
    mode = LISTENER_MODES[listener.protocol]
    body = [f"maxconn {listener_maxconn(listener, settings)}"]
    tls_words = _bind_tls(listener.tls, paths) if listener.protocol == "TERMINATED_HTTPS" else []
    for vip in lb.vips:
        body.append(" ".join(["bind", host_port(vip, listener.protocol_port), *tls_words]))
    body.append(f"mode {mode}")
    if mode == "http":
        # On a reload the old worker answers the next request of an idle keep-alive
        # connection with "Connection: close" rather than closing it at once, which
        # races a client sending on it (HAProxy >= 2.6; HTTP mode only).
        body.append("option idle-close-on-response")
    body += _allowed_cidrs(listener.allowed_cidrs)
    body.append(f"timeout client {int(listener.timeout_client_data)}")
    if listener.timeout_tcp_inspect:
        body.append(f"tcp-request inspect-delay {int(listener.timeout_tcp_inspect)}")
    if settings.connection_logging and paths.log_socket:
        body.append(f"log-format {syn.quote(_log_format(lb, mode, settings))}")
    if listener.protocol == "TERMINATED_HTTPS" and listener.hsts_max_age is not None:
        body.append("http-response set-header Strict-Transport-Security "
                    + syn.quote(_hsts(listener)))
    if listener.protocol == "PROMETHEUS":
        body += PROMETHEUS_SERVICE
        return _section(f"frontend {syn.name(listener.id, 'listener id')}", body)
    if mode == "http":
        body += _l7policies(lb, listener)
    default_pool = lb.pool(listener.default_pool_id)
    if default_pool is not None and default_pool.enabled:
        body.append(f"default_backend {backend_name(default_pool.id, listener.id)}")
    return _section(f"frontend {syn.name(listener.id, 'listener id')}", body)


def _bind_tls(tls: model.ListenerTLS | None, paths: AmphoraPaths) -> list[str]:
    if tls is None:
        raise ValueError("a TERMINATED_HTTPS listener needs its TLS settings")
    words = ["ssl", "crt-list", syn.quote(paths.cert(tls.crt_list_file))]
    if tls.client_ca_file:
        words += ["ca-file", syn.quote(paths.cert(tls.client_ca_file)),
                  "verify", CLIENT_VERIFY[tls.client_authentication]]
        if tls.client_crl_file:
            words += ["crl-file", syn.quote(paths.cert(tls.client_crl_file))]
    words += syn.cipher_words(tls.ciphers)
    words += syn.tls_version_flags(tls.versions) if tls.versions else []
    if tls.alpn_protocols:
        words += ["alpn", syn.quote(",".join(tls.alpn_protocols))]
    return words


def _allowed_cidrs(cidrs: tuple[str, ...]) -> list[str]:
    """Connections from anywhere else are closed before any data is read."""
    if not cidrs:
        return []
    nets = [str(ipaddress.ip_network(cidr, strict=False)) for cidr in cidrs]
    lines = [f"acl allowed-cidrs src {' '.join(nets[i:i + CIDRS_PER_LINE])}"
             for i in range(0, len(nets), CIDRS_PER_LINE)]
    return [*lines, "tcp-request connection reject if !allowed-cidrs"]


def _log_format(lb: model.LoadBalancer, mode: str, settings: HaproxySettings) -> str:
    fmt = settings.user_log_format
    if mode == "tcp":
        # HTTP-only fields have nothing to say about a TCP stream.
        for field in ("%{+Q}r", "%r", "%{+Q}ST", "%ST"):
            fmt = fmt.replace(field, "-")
    return (fmt.replace("{{ project_id }}", syn.log_format_literal(lb.project_id))
            .replace("{{ lb_id }}", syn.log_format_literal(lb.id)))


def _hsts(listener: model.Listener) -> str:
    parts = [f"max-age={int(listener.hsts_max_age or 0)}"]
    if listener.hsts_include_subdomains:
        parts.append("includeSubDomains")
    if listener.hsts_preload:
        parts.append("preload")
    return "; ".join(parts)


# --- L7 policies -------------------------------------------------------------------


def _active_policies(lb: model.LoadBalancer, listener: model.Listener) -> list[model.L7Policy]:
    """Policies that take part, in position order, each with at least one enabled rule."""
    active = []
    for policy in sorted(listener.l7policies, key=lambda p: p.position):
        if not policy.enabled or not any(rule.enabled for rule in policy.rules):
            continue
        if policy.action == "REDIRECT_TO_POOL":
            pool = lb.pool(policy.redirect_pool_id)
            if pool is None or not pool.enabled:
                continue
        elif policy.action in ("REDIRECT_TO_URL", "REDIRECT_PREFIX"):
            target = policy.redirect_url if policy.action == "REDIRECT_TO_URL" \
                else policy.redirect_prefix
            if not target or syn.has_control(target):  # dropped, as Octavia does
                continue
        elif policy.action != "REJECT":
            raise ValueError(f"unknown L7 policy action {policy.action!r}")
        active.append(policy)
    return active


def _l7policies(lb: model.LoadBalancer, listener: model.Listener) -> list[str]:
    lines: list[str] = []
    switches: list[str] = []
    guard = ""  # set once a pool switch may have matched: later policies must not run
    for policy in _active_policies(lb, listener):
        rules = [rule for rule in policy.rules if rule.enabled]
        lines += [f"acl {syn.name(rule.id, 'L7 rule id')} {acl_criterion(rule)}"
                  for rule in rules]
        cond = guard + " ".join(("!" if rule.invert else "") + rule.id for rule in rules)
        code = f" code {int(policy.redirect_http_code)}" if policy.redirect_http_code else ""
        if policy.action == "REJECT":
            lines.append(f"http-request deny if {cond}")
        elif policy.action == "REDIRECT_TO_URL":
            url = syn.quote(syn.log_format_literal(policy.redirect_url or ""))
            lines.append(f"http-request redirect{code} location {url} if {cond}")
        elif policy.action == "REDIRECT_PREFIX":
            prefix = syn.quote(syn.log_format_literal(policy.redirect_prefix or ""))
            lines.append(f"http-request redirect{code} prefix {prefix} if {cond}")
        else:  # REDIRECT_TO_POOL
            position = int(policy.position)
            lines.append(f"http-request set-var({L7_VAR}) int({position}) if {cond}")
            switches.append(
                f"use_backend {backend_name(policy.redirect_pool_id or '', listener.id)}"
                f" if {{ var({L7_VAR}) -m int {position} }}")
            guard = f"!{{ var({L7_VAR}) -m found }} "
    return lines + switches


def acl_criterion(rule: model.L7Rule) -> str:
    """What follows ``acl <name>`` for one L7 rule (fetch, flags, pattern)."""
    if rule.compare_type not in COMPARE:
        raise ValueError(f"unknown L7 rule compare type {rule.compare_type!r}")
    match = COMPARE[rule.compare_type]
    value = syn.acl_pattern(rule.value)
    if rule.type == "HOST_NAME":
        return f"req.hdr(host) -i {match} {value}"
    if rule.type == "PATH":
        return f"path {match} {value}"
    if rule.type == "FILE_TYPE":
        if rule.compare_type == "EQUAL_TO":
            return f"path_end {value}"
        return f"path_end {match} {value}"
    if rule.type == "HEADER":
        key = syn.http_token(rule.key or "", "header name")
        return f"{syn.quote(f'req.hdr({key})')} {match} {value}"
    if rule.type == "COOKIE":
        key = syn.http_token(rule.key or "", "cookie name")
        return f"{syn.quote(f'req.cook({key})')} {match} {value}"
    if rule.type == "SSL_CONN_HAS_CERT":
        return "ssl_c_used"
    if rule.type == "SSL_VERIFY_RESULT":
        return f"ssl_c_verify eq {int(rule.value)}"
    if rule.type == "SSL_DN_FIELD":
        return f"ssl_c_s_dn({syn.dn_field(rule.key or '')}) {match} {value}"
    raise ValueError(f"unknown L7 rule type {rule.type!r}")


# --- backends ----------------------------------------------------------------------


def _listener_pools(lb: model.LoadBalancer, listener: model.Listener) -> list[model.Pool]:
    """Enabled pools the listener can send to: its default pool, then the pools of its L7
    policies (even inactive ones, so the heartbeat reports every pool of the listener)."""
    if listener.protocol == "PROMETHEUS":
        return []
    ids = [listener.default_pool_id]
    ids += [policy.redirect_pool_id
            for policy in sorted(listener.l7policies, key=lambda p: p.position)
            if policy.action == "REDIRECT_TO_POOL"]
    seen: set[str] = set()
    pools = []
    for pool_id in ids:
        pool = lb.pool(pool_id)
        if pool is not None and pool.enabled and pool.id not in seen:
            seen.add(pool.id)
            pools.append(pool)
    return pools


def _monitor(pool: model.Pool) -> model.HealthMonitor | None:
    hm = pool.health_monitor
    return hm if hm is not None and hm.enabled and hm.type in CHECKED_MONITORS else None


def _monitor_type(pool: model.Pool) -> str | None:
    hm = _monitor(pool)
    return hm.type if hm else None


def _backend(lb: model.LoadBalancer, listener: model.Listener, pool: model.Pool,
             settings: HaproxySettings, paths: AmphoraPaths, peers: str | None) -> list[str]:
    listener_mode = LISTENER_MODES[listener.protocol]
    mode = POOL_MODES.get(pool.protocol, listener_mode)
    hm = _monitor(pool)
    body = [f"mode {mode}"]
    body += _balance(pool.lb_algorithm)
    body += _persistence(pool.session_persistence, mode, settings, peers)
    if hm:
        body += _health_check(hm, paths)
    if mode == "http":
        body += _insert_headers(listener)
    body += [
        f"fullconn {listener_maxconn(listener, settings)}",
        "option allbackups",
        f"timeout connect {int(listener.timeout_member_connect)}",
        f"timeout server {int(listener.timeout_member_data)}",
    ]
    if pool.drain_timeout is not None:
        # Read by the agent, which drains removed and disabled members at runtime.
        body.append(pool_tags.drain_comment(pool.drain_timeout))
    cookie = (mode == "http" and pool.session_persistence is not None
              and pool.session_persistence.type == "HTTP_COOKIE")
    body += [_server(member, pool, listener, hm, cookie, paths) for member in pool.members]
    return _section(f"backend {backend_name(pool.id, listener.id)}", body)


def _balance(algorithm: str) -> list[str]:
    if algorithm == "SOURCE_IP_PORT":
        return [f"balance {SOURCE_IP_PORT_BALANCE}",
                f"tcp-request content set-var({SOURCE_PORT_VAR}) src_port"]
    return [f"balance {BALANCE.get(algorithm, 'roundrobin')}"]


def _persistence(sp: model.SessionPersistence | None, mode: str,
                 settings: HaproxySettings, peers: str | None) -> list[str]:
    if sp is None:
        return []
    size = syn.quote(settings.stick_table_size)
    extra = f" expire {int(sp.persistence_timeout)}s" if sp.persistence_timeout else ""
    extra += f" peers {peers}" if peers else ""
    if sp.type == "SOURCE_IP":
        return [f"stick-table type ipv6 size {size}{extra}", "stick on src"]
    if mode != "http":  # cookies exist only in HTTP
        return []
    if sp.type == "APP_COOKIE" and sp.cookie_name:
        cookie = syn.http_token(sp.cookie_name, "cookie name")
        return [f"stick-table type string len 64 size {size}{extra}",
                f"stick store-response res.cook({cookie})",
                f"stick match req.cook({cookie})"]
    if sp.type == "HTTP_COOKIE":
        cookie = syn.http_token(sp.cookie_name or "SRV", "cookie name")
        return [f"cookie {cookie} insert indirect nocache"]
    return []


def _health_check(hm: model.HealthMonitor, paths: AmphoraPaths) -> list[str]:
    lines = []
    if paths.server_state_file:
        # Keep each server's check result across reloads instead of starting over.
        lines.append("load-server-state-from-file global")
    lines.append(f"timeout check {int(hm.timeout)}s")
    if hm.type in ("HTTP", "HTTPS"):
        send = ["http-check send meth", syn.quote(hm.http_method or "GET"),
                "uri", syn.quote(hm.url_path or "/")]
        if hm.http_version:
            send.append(f"ver HTTP/{float(hm.http_version):.1f}")
        if hm.domain_name:
            send += ["hdr Host", syn.quote(syn.log_format_literal(hm.domain_name))]
        codes = syn.status_list(parse_expected_codes(hm.expected_codes))
        lines += ["option httpchk", " ".join(send), f"http-check expect status {codes}"]
    elif hm.type == "PING":
        if not paths.ping_script:
            raise ValueError("a PING health monitor needs AmphoraPaths.ping_script")
        lines += ["option external-check",
                  f"external-check path {PING_PATH}",
                  f"external-check command {syn.quote(paths.ping_script)}"]
    return lines


def _insert_headers(listener: model.Listener) -> list[str]:
    wanted = {key for key, value in listener.insert_headers if str(value).lower() == "true"}
    tls = listener.protocol == "TERMINATED_HTTPS"
    lines = []
    if "X-Forwarded-For" in wanted:
        lines.append("option forwardfor")
    if "X-Forwarded-Port" in wanted:
        lines.append("http-request set-header X-Forwarded-Port %[dst_port]")
    if "X-Forwarded-Proto" in wanted:
        lines.append(f"http-request set-header X-Forwarded-Proto {'https' if tls else 'http'}")
    lines += [f"http-request set-header {header} %[src]"
              for header in SOURCE_HEADERS if header in wanted]
    if tls:
        lines += [f"http-request set-header {header} {value}"
                  for header, value in SSL_HEADERS if header in wanted]
    return lines


def _server(member: model.Member, pool: model.Pool, listener: model.Listener,
            hm: model.HealthMonitor | None, cookie: bool, paths: AmphoraPaths) -> str:
    words = ["server", syn.name(member.id, "member id"),
             host_port(member.address, member.protocol_port), "weight", str(int(member.weight))]
    if pool.slow_start:
        words += ["slowstart", f"{int(pool.slow_start)}s"]
    tls = pool.tls
    if hm:
        words.append("check")
        if hm.type in ("HTTPS", "TLS-HELLO") and tls is None:
            # The check speaks TLS to a member the traffic reaches in the clear (HTTPS
            # passthrough): a handshake is the TLS-HELLO check.
            words += ["check-ssl", "verify", "none"]
        if tls is not None and tls.alpn_protocols and hm.type in ("HTTP", "HTTPS"):
            words += ["check-alpn", syn.quote(",".join(tls.alpn_protocols))]
        words += ["inter", f"{int(hm.delay)}s", "fall", str(int(hm.max_retries_down)),
                  "rise", str(int(hm.max_retries))]
        if member.monitor_address:
            words += ["addr", str(ipaddress.ip_address(member.monitor_address))]
        if member.monitor_port:
            words += ["port", str(int(member.monitor_port))]
    if cookie:
        words += ["cookie", member.id]
    if pool.protocol == "PROXY":
        words.append("send-proxy")
    elif pool.protocol == "PROXYV2":
        words.append("send-proxy-v2-ssl-cn" if listener.protocol == "TERMINATED_HTTPS"
                     else "send-proxy-v2")
    if member.backup:
        words.append("backup")
    if not member.enabled:
        words.append("disabled")
    if tls is not None:
        words += _server_tls(tls, paths)
    return " ".join(words)


def _server_tls(tls: model.PoolTLS, paths: AmphoraPaths) -> list[str]:
    words = ["ssl"]
    if tls.client_cert_file:
        words += ["crt", syn.quote(paths.cert(tls.client_cert_file))]
    if tls.ca_file:
        words += ["ca-file", syn.quote(paths.cert(tls.ca_file)), "verify", "required"]
        if tls.crl_file:
            words += ["crl-file", syn.quote(paths.cert(tls.crl_file))]
    else:
        words += ["verify", "none"]
    words += ["sni", "ssl_fc_sni"]
    words += syn.cipher_words(tls.ciphers)
    words += syn.tls_version_flags(tls.versions) if tls.versions else []
    if tls.alpn_protocols:
        words += ["alpn", syn.quote(",".join(tls.alpn_protocols))]
    return words

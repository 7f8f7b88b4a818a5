"""keepalived.conf for one member of an ACTIVE_STANDBY pair, and the VRRP check script.

Octavia's shape (reference §6.3): one VRRP instance on the VIP interface, unicast
adverts to the peer, priority 100 (MASTER) / 90 (BACKUP) with ``nopreempt`` and no
``state`` line (both start as BACKUP; the higher priority wins the first election and a
recovered MASTER does not take the VIP back), PASS authentication, periodic gratuitous
ARP, and a ``vrrp_script`` that moves the instance to FAULT when HAProxy stops answering.

Differences, on purpose:
- A fractional ``advert_int`` (sub-second failover) or an IPv6 VRRP address needs VRRPv3,
  which has no authentication: the instance is rendered ``version 3`` without an
  ``authentication`` block. ``check_unicast_src`` is always on, so adverts are accepted
  only from the configured peers whatever the version.
- Policy routing (``virtual_routes``/``virtual_rules``) is rendered only for a VIP that
  has a gateway. In a namespace amphora the VIP subnet is directly attached, so clients
  on it need no route; a gateway matters only for clients beyond it, and then replies
  sourced from the VIP must leave through the VIP subnet's gateway rather than the
  namespace's default route. Each such VIP gets a table of its own, so two VIPs with
  different gateways cannot fight over one default route.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
from collections.abc import Sequence

MASTER_PRIORITY = 100
BACKUP_PRIORITY = 90

# Words that end up in the file verbatim: no whitespace, quotes, braces or comment marks.
_WORD = re.compile(r"[A-Za-z0-9_.:@%+=/-]+")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


def priority_for(role: str) -> int:
    """Octavia's priorities: MASTER 100, BACKUP 90."""
    if role == "MASTER":
        return MASTER_PRIORITY
    if role == "BACKUP":
        return BACKUP_PRIORITY
    raise ValueError(f"VRRP role must be MASTER or BACKUP, not {role!r}")


@dataclasses.dataclass(frozen=True)
class VRRPVip:
    """A VIP held by the MASTER, with its subnet's prefix length."""

    address: str
    prefixlen: int
    # Set when clients may sit beyond a router: replies from the VIP then use it.
    gateway: str | None = None

    def __post_init__(self) -> None:
        ip = ipaddress.ip_address(self.address)
        if not 0 < self.prefixlen <= ip.max_prefixlen:
            raise ValueError(f"bad prefix length {self.prefixlen} for VIP {self.address}")
        if self.gateway is not None and ipaddress.ip_address(self.gateway).version != ip.version:
            raise ValueError(f"gateway {self.gateway} is not of the family of {self.address}")

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(f"{self.address}/{self.prefixlen}").network


@dataclasses.dataclass(frozen=True)
class VRRPConfig:
    """Everything one amphora of a pair needs in its keepalived.conf."""

    name: str  # vrrp_instance name: the load balancer id without dashes
    interface: str  # the VIP interface inside the amphora
    vrrp_ip: str  # this amphora's own address on the VIP subnet
    peer_ips: tuple[str, ...]  # the other amphorae's vrrp_ip
    priority: int  # MASTER_PRIORITY or BACKUP_PRIORITY
    vips: tuple[VRRPVip, ...]
    auth_pass: str  # PASS authentication, at most 8 characters (VRRPv2 only)
    check_script: str  # absolute path of the script from render_check_script()
    virtual_router_id: int = 1
    advert_int: float = 1  # seconds; fractional means VRRPv3
    check_interval: int = 5
    check_timeout: int = 5
    check_fall: int = 2
    check_rise: int = 2
    garp_refresh: int = 5  # seconds between gratuitous ARP bursts while MASTER
    garp_refresh_repeat: int = 2  # gratuitous ARPs per burst
    # Adverts a BACKUP misses before it takes over. VRRP says 3 plus a skew (3.65 s for a
    # BACKUP at 1 s adverts); 2, with no skew, bounds the takeover at 2 s. Both amphorae
    # of a pair render the same value, as keepalived requires.
    down_timer_adverts: int = 2
    notify: str | None = None  # script run on every state change
    router_id: str | None = None  # names this node in keepalived's logs (the amphora id)
    route_table: int = 1  # first policy-routing table for VIPs with a gateway
    rule_priority: int = 100

    def __post_init__(self) -> None:
        _check_word("name", self.name)
        if not _IFNAME.fullmatch(self.interface):
            raise ValueError(f"bad interface name {self.interface!r}")
        own = ipaddress.ip_address(self.vrrp_ip)
        if not self.peer_ips:
            raise ValueError("an ACTIVE_STANDBY amphora needs at least one peer")
        for peer in self.peer_ips:
            if ipaddress.ip_address(peer).version != own.version:
                raise ValueError(f"peer {peer} is not of the family of {self.vrrp_ip}")
        if not self.vips:
            raise ValueError("at least one VIP is needed")
        if not 1 <= self.priority <= 254:
            raise ValueError("priority must be within 1..254")
        if not 1 <= self.virtual_router_id <= 255:
            raise ValueError("virtual_router_id must be within 1..255")
        if not 1 <= len(self.auth_pass) <= 8:
            raise ValueError("auth_pass must have 1 to 8 characters")
        _check_word("auth_pass", self.auth_pass)
        if not 0.01 <= self.advert_int <= 255:
            raise ValueError("advert_int must be within 0.01..255 seconds")
        for label in ("check_interval", "check_timeout", "check_fall", "check_rise",
                      "garp_refresh", "garp_refresh_repeat", "route_table", "rule_priority",
                      "down_timer_adverts"):
            if getattr(self, label) < 1:
                raise ValueError(f"{label} must be positive")
        for label in ("check_script", "notify"):
            path = getattr(self, label)
            if path is not None:
                _check_word(label, path)
                if not path.startswith("/"):
                    raise ValueError(f"{label} must be an absolute path")
        if self.router_id is not None:
            _check_word("router_id", self.router_id)

    @property
    def version(self) -> int:
        """The VRRP version: 3 where VRRPv2 cannot express the configuration."""
        ipv6 = ipaddress.ip_address(self.vrrp_ip).version == 6
        return 3 if ipv6 or not float(self.advert_int).is_integer() else 2


def _check_word(label: str, value: str) -> None:
    if not _WORD.fullmatch(value):
        raise ValueError(f"{label} {value!r} has characters keepalived.conf cannot carry")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def render(vrrp: VRRPConfig) -> str:
    """The keepalived.conf text for one amphora of the pair."""
    family = ipaddress.ip_address(vrrp.vrrp_ip).version
    lines = ["# keepalived VRRP for one amphora of an ACTIVE_STANDBY pair (generated)", ""]

    lines.append("global_defs {")
    if vrrp.router_id:
        lines.append(f"    router_id {vrrp.router_id}")
    # Scripts run as root (the check may need nft), and keepalived refuses any script a
    # non-root user could rewrite.
    lines += ["    script_user root", "    enable_script_security", "}", ""]

    lines += [
        "vrrp_script check_script {",
        f"    script {vrrp.check_script}",
        f"    interval {vrrp.check_interval}",
        f"    timeout {vrrp.check_timeout}",
        f"    fall {vrrp.check_fall}",
        f"    rise {vrrp.check_rise}",
        "}",
        "",
    ]

    lines += [
        f"vrrp_instance {vrrp.name} {{",
        f"    interface {vrrp.interface}",
        f"    virtual_router_id {vrrp.virtual_router_id}",
        f"    priority {vrrp.priority}",
        "    nopreempt",
        "    accept",
    ]
    if vrrp.version == 3:
        lines.append("    version 3")
    lines += [
        f"    advert_int {_number(vrrp.advert_int)}",
        f"    garp_master_refresh {vrrp.garp_refresh}",
        f"    garp_master_refresh_repeat {vrrp.garp_refresh_repeat}",
        f"    down_timer_adverts {vrrp.down_timer_adverts}",
    ]
    if vrrp.version == 2:
        lines += [
            "    authentication {",
            "        auth_type PASS",
            f"        auth_pass {vrrp.auth_pass}",
            "    }",
        ]
    lines += [f"    unicast_src_ip {vrrp.vrrp_ip}", "    check_unicast_src", "    unicast_peer {"]
    lines += [f"        {peer}" for peer in vrrp.peer_ips]
    lines.append("    }")

    # Adverts carry addresses of one family only; the other family's VIPs still move
    # with the instance but stay out of the adverts.
    same = [v for v in vrrp.vips if v.version == family]
    other = [v for v in vrrp.vips if v.version != family]
    for block, vips in (("virtual_ipaddress", same), ("virtual_ipaddress_excluded", other)):
        if vips:
            lines.append(f"    {block} {{")
            lines += [f"        {v.address}/{v.prefixlen} dev {vrrp.interface}" for v in vips]
            lines.append("    }")

    routes, rules = _policy_routing(vrrp)
    if routes:
        lines += ["    virtual_routes {", *routes, "    }", "    virtual_rules {", *rules, "    }"]

    lines += ["    track_script {", "        check_script", "    }"]
    if vrrp.notify:
        lines.append(f"    notify {vrrp.notify}")
    lines += ["}", ""]
    return "\n".join(lines)


def _policy_routing(vrrp: VRRPConfig) -> tuple[list[str], list[str]]:
    """Routes and rules sending traffic sourced from a VIP out through its gateway."""
    routes: list[str] = []
    rules: list[str] = []
    dev = vrrp.interface
    table = vrrp.route_table
    for vip in vrrp.vips:
        if vip.gateway is None:
            continue
        host = 32 if vip.version == 4 else 128
        default = "default" if vip.version == 4 else "::/0"
        routes += [
            f"        {vip.network} dev {dev} src {vip.address} scope link table {table}",
            f"        {default} via {vip.gateway} dev {dev} onlink table {table}",
        ]
        rules.append(f"        from {vip.address}/{host} table {table} "
                     f"priority {vrrp.rule_priority}")
        table += 1
    return routes, rules


# socat splits its address argument at ',' (options) and '!!' (dual addresses).
_SOCKET_PATH = re.compile(r"/[A-Za-z0-9_./@+=-]+")
_NFT_TABLE = re.compile(r"(ip|ip6|inet) [A-Za-z][A-Za-z0-9_]*")


def render_check_script(
    stats_sockets: Sequence[str], *, nft_tables: Sequence[str] = (), timeout: int = 2
) -> str:
    """A POSIX sh script that succeeds only when every listed data path is alive.

    Each HAProxy stats socket must answer ``show info`` with its ``Pid:`` line; a dead or
    wedged worker makes socat fail or time out (``timeout`` seconds of silence) and the
    script exit 1. socat is the smallest tool that speaks to a UNIX socket: POSIX sh cannot,
    and starting an interpreter every few seconds is what the check must not cost.
    ``nft_tables`` (e.g. ``"inet amphorae"``) must exist for an amphora that carries UDP
    listeners: their data path is kernel rules, so "alive" means "loaded".

    With nothing to check the script fails: an amphora serving nothing must not hold the
    VIP while its peer may be serving.
    """
    for path in stats_sockets:
        if not _SOCKET_PATH.fullmatch(path):
            raise ValueError(f"stats socket path {path!r} cannot be passed to socat")
    for table in nft_tables:
        if not _NFT_TABLE.fullmatch(table):
            raise ValueError(f"bad nftables table {table!r}")
    if timeout < 1:
        raise ValueError("timeout must be positive")

    lines = ["#!/bin/sh", "# VRRP health check for keepalived (generated): exit 0 only if "
             "every data path answers.", ""]
    if not stats_sockets and not nft_tables:
        lines += ["# No listener on this amphora: do not claim the VIP.", "exit 1", ""]
        return "\n".join(lines)
    for path in stats_sockets:
        lines.append(
            f"printf 'show info\\n' | socat -T {timeout} -t {timeout} - "
            f"{shlex.quote('UNIX-CONNECT:' + path)} 2>/dev/null | grep -q '^Pid:' || exit 1")
    for table in nft_tables:
        lines.append(f"nft list table {table} >/dev/null 2>&1 || exit 1")
    lines += ["exit 0", ""]
    return "\n".join(lines)


"""nftables rules for a load balancer's UDP listeners (this kernel has no IPVS).

One ``nft -f`` script per amphora namespace. It owns a single table and replaces it in
one transaction: ``add table`` (so the ``delete`` cannot fail on a first load), ``delete
table``, then the new definition. nft applies a file atomically, so packets see either the
old rule set or the new one, and loading the same file twice leaves the same state.

Per UDP listener and VIP, the first packet of a flow is DNATed to one member:

- ROUND_ROBIN: ``numgen inc mod N`` over a slot list in which a member of weight w holds w
  slots (weights reduced by their common divisor, interleaved, see :func:`member_slots`).
- SOURCE_IP, or any algorithm with SOURCE_IP session persistence: ``jhash`` of the client
  address, so a client keeps its member for as long as the member set does not change.
- SOURCE_IP_PORT: ``jhash`` of client address and port.
- LEAST_CONNECTIONS: round robin. The choice is made in the packet path with no view of
  how many flows each member holds (nftables has no per-destination connection count to
  pick a minimum from); for UDP flows of similar length, rotation gives the same spread.

Conntrack keeps every later packet of a flow on the member its first packet went to, also
across reloads of this table (NAT is decided once per connection). Replies must come back
through the amphora, so DNATed flows are masqueraded on the way out to the member: the
member sees the amphora's address on the member network and answers it; conntrack turns
the reply back into one from VIP:port.

The amphora namespace must forward (``net.ipv4.ip_forward``, ``net.ipv6.conf.all.
forwarding``); that is the agent's job when it loads these rules.

``healthy`` maps a pool id (or the listener id) to the ids of the members the agent's
health checks consider up; a pool absent from it (None: every pool) uses all its enabled
members. Backup members take traffic only while no primary member is healthy. With no
member at all a listener gets no DNAT rule: its packets reach the amphora itself, where
nothing listens, and the client receives ICMP port unreachable.

allowed_cidrs are enforced before NAT (priority -150, after conntrack): other sources are
dropped for that listener.
"""

from __future__ import annotations

import ipaddress
import math
import re
import zlib
from collections.abc import Collection, Mapping, Sequence
from functools import reduce

from amphorae.common import constants
from amphorae.contract import model

TABLE_FAMILY = "inet"
TABLE_NAME = "amphorae"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"

# Upper bound on a round-robin map; larger weight sums are scaled down proportionally.
MAX_SLOTS = 1024

_FAMILY_WORD = {4: "ip", 6: "ip6"}
_COMMENT_SAFE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def member_slots(weights: Sequence[tuple[str, int]], max_slots: int = MAX_SLOTS) -> list[str]:
    """Slot list for weighted selection: each key appears in proportion to its weight.

    Keys with weight 0 (or less) get no slot. Weights are divided by their greatest common
    divisor, scaled down when their sum exceeds ``max_slots`` (every key keeps at least one
    slot), and interleaved with smooth weighted round robin, so consecutive flows spread
    across members instead of going w times in a row to the same one.
    """
    live = [(key, w) for key, w in weights if w > 0]
    if not live:
        return []
    divisor = reduce(math.gcd, (w for _, w in live))
    reduced = [(key, w // divisor) for key, w in live]
    total = sum(w for _, w in reduced)
    if total > max_slots:
        reduced = [(key, max(1, round(w * max_slots / total))) for key, w in reduced]
        total = sum(w for _, w in reduced)
    current = [0] * len(reduced)
    slots = []
    for _ in range(total):
        for i, (_, w) in enumerate(reduced):
            current[i] += w
        best = max(range(len(reduced)), key=lambda i: current[i])  # first of equals wins
        current[best] -= total
        slots.append(reduced[best][0])
    return slots


def select_members(pool: model.Pool, up: Collection[str] | None) -> list[model.Member]:
    """Members that should receive new flows: healthy enabled primaries, else backups."""
    candidates = [m for m in pool.members
                  if m.enabled and m.weight > 0 and (up is None or m.id in up)]
    primaries = [m for m in candidates if not m.backup]
    return primaries or [m for m in candidates if m.backup]


def render(lb: model.LoadBalancer,
           healthy: Mapping[str, Collection[str]] | None = None) -> str:
    """The ``nft -f`` script for the amphora namespace of ``lb``."""
    filter_rules: list[str] = []
    nat_rules: list[str] = []
    nat_vips: dict[int, list[str]] = {4: [], 6: []}

    for listener in _udp_listeners(lb):
        pool = lb.pool(listener.default_pool_id)
        members: list[model.Member] = []
        if pool is not None and pool.enabled:
            members = select_members(pool, _up(healthy, pool, listener))
        for vip in lb.vips:
            version = ipaddress.ip_address(vip).version
            match = f"{_FAMILY_WORD[version]} daddr {vip} udp dport {listener.protocol_port}"
            comment = f'comment "listener {_comment_safe(listener.id)}"'
            drop = _allowed_cidrs_rule(listener, version)
            if drop is not None:
                filter_rules.append(f"{match} {drop} {comment}")
            same_family = [m for m in members if ipaddress.ip_address(m.address).version
                           == version]
            if pool is None or not same_family:
                continue
            nat_rules.append(f"{match} {_dnat(pool, same_family, version)} {comment}")
            if vip not in nat_vips[version]:
                nat_vips[version].append(vip)

    return _script(lb, filter_rules, nat_rules, nat_vips)


def _comment_safe(text: str) -> str:
    """Ids are UUIDs; anything else must not break out of the quoted comment."""
    if not _COMMENT_SAFE.fullmatch(text):
        raise ValueError(f"id {text!r} cannot be put in an nftables comment")
    return text


def _udp_listeners(lb: model.LoadBalancer) -> list[model.Listener]:
    if not lb.enabled:
        return []
    return [li for li in lb.listeners if li.enabled and li.protocol == constants.UDP]


def _up(healthy: Mapping[str, Collection[str]] | None, pool: model.Pool,
        listener: model.Listener) -> Collection[str] | None:
    if healthy is None:
        return None
    if pool.id in healthy:
        return healthy[pool.id]
    return healthy.get(listener.id)


def _allowed_cidrs_rule(listener: model.Listener, version: int) -> str | None:
    """The drop statement for sources outside allowed_cidrs, or None if all may pass."""
    if not listener.allowed_cidrs:
        return None
    nets = [n for n in (ipaddress.ip_network(c, strict=False) for c in listener.allowed_cidrs)
            if n.version == version]
    if not nets:  # only the other family is allowed
        return "drop"
    # Overlapping prefixes would be refused in an interval set: merge them first.
    merged = ", ".join(str(n) for n in ipaddress.collapse_addresses(nets))
    return f"{_FAMILY_WORD[version]} saddr != {{ {merged} }} drop"


def _dnat(pool: model.Pool, members: list[model.Member], version: int) -> str:
    family = _FAMILY_WORD[version]
    by_id = {m.id: m for m in members}
    slots = member_slots([(m.id, m.weight) for m in members])
    if len(set(slots)) == 1:
        return f"dnat {family} to {_endpoint(by_id[slots[0]], version)}"
    persistence = pool.session_persistence
    sticky = persistence is not None and persistence.type == "SOURCE_IP"
    if sticky or pool.lb_algorithm == "SOURCE_IP":
        key = f"{family} saddr"
    elif pool.lb_algorithm == "SOURCE_IP_PORT":
        key = f"{family} saddr . udp sport"
    else:  # ROUND_ROBIN, and LEAST_CONNECTIONS (see the module docstring)
        key = None
    if key is None:
        selector = f"numgen inc mod {len(slots)}"
    else:
        # A seed fixed per pool keeps clients on their member across reloads.
        selector = f"jhash {key} mod {len(slots)} seed {zlib.crc32(pool.id.encode()):#010x}"
    elements = ", ".join(f"{i} : {by_id[key_id].address} . {by_id[key_id].protocol_port}"
                         for i, key_id in enumerate(slots))
    return f"dnat {family} to {selector} map {{ {elements} }}"


def _endpoint(member: model.Member, version: int) -> str:
    if version == 6:
        return f"[{member.address}]:{member.protocol_port}"
    return f"{member.address}:{member.protocol_port}"


def _script(lb: model.LoadBalancer, filter_rules: list[str], nat_rules: list[str],
            nat_vips: dict[int, list[str]]) -> str:
    out = [
        f"# nftables UDP listeners of load balancer {lb.id} (generated)",
        "# Replaces the whole table in one transaction; loading it again changes nothing.",
        f"add table {TABLE}",
        f"delete table {TABLE}",
        f"table {TABLE} {{",
        "\tchain filter_prerouting {",
        "\t\ttype filter hook prerouting priority -150; policy accept;",
        *(f"\t\t{rule}" for rule in filter_rules),
        "\t}",
        "",
        "\tchain nat_prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        *(f"\t\t{rule}" for rule in nat_rules),
        "\t}",
        "",
        "\tchain nat_postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    for version, vips in nat_vips.items():
        if vips:
            family = _FAMILY_WORD[version]
            out.append(f"\t\tmeta l4proto udp ct status dnat ct original {family} daddr "
                       f"{{ {', '.join(vips)} }} masquerade")
    out += ["\t}", "}", ""]
    return "\n".join(out)

"""The desired state of one load balancer: its database tree as the render model.

What is being removed (PENDING_DELETE, DELETED) is left out, and so is whatever the caller
names in ``exclude`` (with everything below it): the worker renders again without the
objects of a change the amphora refused. Disabled objects stay in with ``enabled=False``;
the renderers decide what that means (HAProxy: a disabled listener or pool is not
rendered, a disabled member is rendered ``disabled``).

Orders are fixed (listeners by port, pools and members by id, L7 policies by position),
so an unchanged tree renders to byte-identical files. The tree is read with one query per
table, however many objects it holds.

Certificate files are named by convention from the id of the listener or pool that uses
them (:func:`listener_cert_files`, :func:`pool_cert_files`); the certificate uploader
writes them under the same names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.contract import model, pool_tags
from amphorae.contract.peers import peer_name
from amphorae.db import models as m

LOG = logging.getLogger(__name__)

# Objects in these states are on their way out of the configuration.
GONE = (c.PENDING_DELETE, c.DELETED)
# Whose stick tables sync: a pair's, and every amphora of an ACTIVE_ACTIVE set.
PEER_ROLES = (c.ROLE_MASTER, c.ROLE_BACKUP, c.ROLE_ACTIVE)

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class ListenerCertFiles:
    """File names, relative to the certificate folder, of a TERMINATED_HTTPS listener."""

    crt_list: str  # the default certificate first, then the SNI ones (Octavia: <id>.pem)
    client_ca: str
    client_crl: str


@dataclasses.dataclass(frozen=True)
class PoolCertFiles:
    """File names, relative to the certificate folder, of a pool that re-encrypts."""

    client_cert: str  # certificate and key the amphora presents to members
    ca: str
    crl: str


def listener_cert_files(listener_id: str) -> ListenerCertFiles:
    return ListenerCertFiles(crt_list=f"{listener_id}.pem",
                             client_ca=f"{listener_id}-ca.pem",
                             client_crl=f"{listener_id}-crl.pem")


def pool_cert_files(pool_id: str) -> PoolCertFiles:
    return PoolCertFiles(client_cert=f"{pool_id}-client.pem", ca=f"{pool_id}-ca.pem",
                         crl=f"{pool_id}-crl.pem")


def load_balancer_model(session: Session, lb_id: str, *,
                        exclude: Collection[str] = ()) -> model.LoadBalancer | None:
    """The render model of ``lb_id`` as the database wants it; None when the load
    balancer does not exist or is DELETED. Ids in ``exclude`` are left out with their
    children; references to an excluded pool become None."""
    lb = session.scalar(select(m.LoadBalancer).where(m.LoadBalancer.id == lb_id).options(
        joinedload(m.LoadBalancer.vip), selectinload(m.LoadBalancer.additional_vips),
        lazyload(m.LoadBalancer.vip_security_groups), lazyload(m.LoadBalancer._tags)))
    if lb is None or lb.provisioning_status == c.DELETED:
        return None
    skip = frozenset(exclude)
    pools = _pools(session, lb_id, skip)
    pool_ids = {pool.id for pool in pools}
    return model.LoadBalancer(
        id=lb.id,
        project_id=lb.project_id or "",
        vips=_vips(lb),
        listeners=_listeners(session, lb_id, skip, pool_ids),
        pools=pools,
        topology=lb.topology or "SINGLE",
        peers=_peers(session, lb_id, skip),
        enabled=lb.enabled,
    )


def _live(row: m.Listener | m.Pool | m.Member | m.HealthMonitor | m.L7Policy | m.L7Rule,
          skip: frozenset[str]) -> bool:
    return row.provisioning_status not in GONE and row.id not in skip


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _tuple(values: Iterable[str] | None, default: Iterable[str]) -> tuple[str, ...]:
    """A stored list, or the API's default when none is stored (as the API itself fills
    it in on create)."""
    return tuple(values) if values else tuple(default)


def _vips(lb: m.LoadBalancer) -> tuple[str, ...]:
    primary = [lb.vip.ip_address] if lb.vip is not None else []
    extra = [v.ip_address for v in sorted(lb.additional_vips, key=lambda v: v.subnet_id)]
    return tuple(address for address in primary + extra if address)


# --- pools ----------------------------------------------------------------------------


def _pools(session: Session, lb_id: str, skip: frozenset[str]) -> tuple[model.Pool, ...]:
    rows = session.scalars(select(m.Pool).where(m.Pool.load_balancer_id == lb_id).options(
        selectinload(m.Pool.members).lazyload(m.Member._tags),
        selectinload(m.Pool.health_monitor).lazyload(m.HealthMonitor._tags),
        selectinload(m.Pool.session_persistence),
        selectinload(m.Pool._tags)).order_by(m.Pool.id))
    return tuple(_pool(row, skip) for row in rows if _live(row, skip))


def _pool(row: m.Pool, skip: frozenset[str]) -> model.Pool:
    hm = row.health_monitor
    tuning = _tuning(row)
    return model.Pool(
        id=row.id,
        protocol=row.protocol,
        lb_algorithm=row.lb_algorithm,
        members=tuple(_member(member) for member in sorted(row.members, key=lambda x: x.id)
                      if _live(member, skip)),
        health_monitor=_monitor(hm) if hm is not None and _live(hm, skip) else None,
        session_persistence=_persistence(row.session_persistence),
        tls=_pool_tls(row),
        enabled=row.enabled,
        drain_timeout=tuning.drain_timeout,
        slow_start=tuning.slow_start,
    )


def _tuning(row: m.Pool) -> pool_tags.PoolTuning:
    """The API refuses bad tags; one stored before that check keeps the defaults."""
    try:
        return pool_tags.parse(row.tags)
    except pool_tags.BadTag as exc:
        LOG.warning("pool %s: ignoring its tags (%s)", row.id, exc)
        return pool_tags.PoolTuning()


def _member(row: m.Member) -> model.Member:
    return model.Member(
        id=row.id, address=row.ip_address, protocol_port=row.protocol_port,
        weight=_or(row.weight, 1), backup=bool(row.backup), enabled=row.enabled,
        monitor_address=row.monitor_address, monitor_port=row.monitor_port)


def _monitor(row: m.HealthMonitor) -> model.HealthMonitor:
    # The API's max_retries is the rise threshold, max_retries_down the fall threshold.
    return model.HealthMonitor(
        id=row.id, type=row.type, delay=row.delay, timeout=row.timeout,
        max_retries=row.rise_threshold, max_retries_down=row.fall_threshold,
        http_method=row.http_method, url_path=row.url_path,
        expected_codes=row.expected_codes, http_version=row.http_version,
        domain_name=row.domain_name, enabled=row.enabled)


def _persistence(row: m.SessionPersistence | None) -> model.SessionPersistence | None:
    if row is None:
        return None
    return model.SessionPersistence(
        type=row.type, cookie_name=row.cookie_name,
        persistence_timeout=row.persistence_timeout,
        persistence_granularity=row.persistence_granularity)


def _pool_tls(row: m.Pool) -> model.PoolTLS | None:
    if not row.tls_enabled:
        return None
    api = config.CONF.api_settings
    files = pool_cert_files(row.id)
    return model.PoolTLS(
        client_cert_file=files.client_cert if row.tls_certificate_id else None,
        ca_file=files.ca if row.ca_tls_certificate_id else None,
        crl_file=files.crl if row.crl_container_id else None,
        ciphers=row.tls_ciphers or api.default_pool_ciphers,
        versions=_tuple(row.tls_versions, api.default_pool_tls_versions),
        alpn_protocols=_tuple(row.alpn_protocols, api.default_pool_alpn_protocols),
    )


# --- listeners ------------------------------------------------------------------------


def _listeners(session: Session, lb_id: str, skip: frozenset[str],
               pool_ids: set[str]) -> tuple[model.Listener, ...]:
    rows = session.scalars(
        select(m.Listener).where(m.Listener.load_balancer_id == lb_id).options(
            selectinload(m.Listener.allowed_cidrs),
            selectinload(m.Listener.l7policies).options(
                lazyload(m.L7Policy._tags),
                selectinload(m.L7Policy.rules).lazyload(m.L7Rule._tags)),
            lazyload(m.Listener.sni_containers), lazyload(m.Listener._tags))
        .order_by(m.Listener.protocol_port, m.Listener.protocol, m.Listener.id))
    return tuple(_listener(row, skip, pool_ids) for row in rows if _live(row, skip))


def _listener(row: m.Listener, skip: frozenset[str], pool_ids: set[str]) -> model.Listener:
    ha = config.CONF.haproxy_amphora
    return model.Listener(
        id=row.id,
        protocol=row.protocol,
        protocol_port=row.protocol_port,
        default_pool_id=row.default_pool_id if row.default_pool_id in pool_ids else None,
        connection_limit=_or(row.connection_limit, -1),
        timeout_client_data=_or(row.timeout_client_data, ha.timeout_client_data),
        timeout_member_connect=_or(row.timeout_member_connect, ha.timeout_member_connect),
        timeout_member_data=_or(row.timeout_member_data, ha.timeout_member_data),
        timeout_tcp_inspect=_or(row.timeout_tcp_inspect, ha.timeout_tcp_inspect),
        insert_headers=tuple(sorted((str(k), str(v))
                                    for k, v in (row.insert_headers or {}).items())),
        allowed_cidrs=tuple(sorted(cidr.cidr for cidr in row.allowed_cidrs)),
        l7policies=_policies(row.l7policies, skip, pool_ids),
        tls=_listener_tls(row) if row.protocol == c.TERMINATED_HTTPS else None,
        hsts_max_age=row.hsts_max_age,
        hsts_include_subdomains=bool(row.hsts_include_subdomains),
        hsts_preload=bool(row.hsts_preload),
        enabled=row.enabled,
    )


def _listener_tls(row: m.Listener) -> model.ListenerTLS:
    api = config.CONF.api_settings
    files = listener_cert_files(row.id)
    return model.ListenerTLS(
        crt_list_file=files.crt_list,
        client_authentication=row.client_authentication or "NONE",
        client_ca_file=files.client_ca if row.client_ca_tls_certificate_id else None,
        client_crl_file=files.client_crl if row.client_crl_container_id else None,
        ciphers=row.tls_ciphers or api.default_listener_ciphers,
        versions=_tuple(row.tls_versions, api.default_listener_tls_versions),
        alpn_protocols=_tuple(row.alpn_protocols, api.default_listener_alpn_protocols),
    )


def _policies(rows: Iterable[m.L7Policy], skip: frozenset[str],
              pool_ids: set[str]) -> tuple[model.L7Policy, ...]:
    policies = []
    for row in sorted(rows, key=lambda p: (p.position, p.id)):
        pool_id = row.redirect_pool_id if row.redirect_pool_id in pool_ids else None
        if not _live(row, skip) or (row.action == "REDIRECT_TO_POOL" and pool_id is None):
            continue  # a pool switch without its pool has nothing to do
        policies.append(model.L7Policy(
            id=row.id, action=row.action, position=row.position,
            rules=tuple(_rule(rule) for rule in sorted(row.rules, key=lambda r: r.id)
                        if _live(rule, skip)),
            redirect_pool_id=pool_id, redirect_url=row.redirect_url,
            redirect_prefix=row.redirect_prefix, redirect_http_code=row.redirect_http_code,
            enabled=row.enabled))
    return tuple(policies)


def _rule(row: m.L7Rule) -> model.L7Rule:
    return model.L7Rule(id=row.id, type=row.type, compare_type=row.compare_type,
                        value=row.value, key=row.key, invert=bool(row.invert),
                        enabled=row.enabled)


# --- peers ----------------------------------------------------------------------------


def _peers(session: Session, lb_id: str, skip: frozenset[str]) -> tuple[model.Peer, ...]:
    """The serving MASTER and BACKUP amphorae, or the ACTIVE ones of an ACTIVE_ACTIVE set
    (not those in ``skip``: being replaced; a draining one is not serving), named as
    their agents name the local peer (-L). Until every one has its VRRP address (an
    ACTIVE one: its own address on the VIP network) there is no complete peers section
    to write."""
    amphorae = [amp for amp in session.scalars(select(m.Amphora).where(
        m.Amphora.load_balancer_id == lb_id, m.Amphora.role.in_(PEER_ROLES),
        m.Amphora.status.in_(c.AMPHORA_SERVING)).order_by(m.Amphora.id))
        if amp.id not in skip]
    peers = [model.Peer(name=peer_name(amp.id), address=amp.vrrp_ip)
             for amp in amphorae if amp.vrrp_ip]
    return tuple(peers) if len(peers) == len(amphorae) else ()

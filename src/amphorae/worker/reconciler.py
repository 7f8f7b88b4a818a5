"""The reconciler: make one load balancer's data plane match the database.

Level-triggered, like a Kubernetes controller: every run reads the desired tree and what
exists, and does only the missing steps, each of them idempotent — so a run that was
killed half-way is simply run again. Steps, in order:

1. amphorae: one per role of the topology (SINGLE: STANDALONE; ACTIVE_STANDBY: MASTER and
   BACKUP, in the compute driver's anti-affinity group when it has one). An amphora that
   is gone, or named by a failover, is replaced: its row is written (BOOTING) before it
   is booted, and a BOOTING row is built again (the compute driver's build is
   idempotent), so a run that crashed mid-boot is finished by the next one. A boot that
   finishes later (a Nova VM) answers BUILDING: the run stops there (:class:`NotYet`) and
   its jobs come back ``[controller_worker] amp_active_wait_sec`` later, holding no
   thread meanwhile, up to ``amp_active_retries`` times;
2. ports: the network driver plugs every amphora into the VIP subnet (the VIP itself on
   a SINGLE amphora, each amphora's own VRRP address in a pair) and its member subnets;
3. configuration: the render model from the database, pushed to every amphora (to a new
   pair's MASTER first, and to its BACKUP once the MASTER holds the VIP). A change
   the amphora refuses (HAProxy's check fails) is retried without the objects the change
   brought, which then go to ERROR while the rest keeps serving;
4. statuses: PENDING_* to ACTIVE (completion.complete), replaced amphorae removed.

A load balancer in PENDING_DELETE loses its amphorae, ports and addresses, then its rows.

Every write goes through the run's fence (queue.Fence): once another worker holds the
jobs, this run stops at its next step or write, and writes nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.contract import model
from amphorae.db import engine, events, scale
from amphorae.db import models as m
from amphorae.drivers.amphora.base import (
    AmphoraRef,
    ConfigRefused,
    TLSFiles,
    VipSubnet,
    VRRPGroup,
)
from amphorae.drivers.compute import base as compute_base
from amphorae.drivers.network import base as net
from amphorae.drivers.registry import Drivers
from amphorae.render.keepalived import priority_for
from amphorae.worker import (
    active_active,
    certificates,
    changes,
    completion,
    desired,
    vip_security,
)
from amphorae.worker.queue import Claim, LeaseLost

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

ROLES = {c.TOPOLOGY_SINGLE: (c.ROLE_STANDALONE,),
         c.TOPOLOGY_ACTIVE_STANDBY: (c.ROLE_MASTER, c.ROLE_BACKUP)}
REPLACING_JOBS = (c.JOB_FAILOVER_AMPHORA, c.JOB_DELETE_AMPHORA)
VIP_HOLDER_WAIT = 10.0  # seconds a new pair may take to elect its MASTER
VIP_HOLDER_POLL = 0.05
DRAIN_POLL = 1.0  # seconds between two looks at a draining amphora


class BuildError(Exception):
    """The load balancer cannot be brought up; the reason is for the operator's log."""


class NotYet(Exception):
    """An amphora is still booting: the run stops, and its jobs are due again after
    ``delay`` seconds (a wait, not a failed attempt)."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


class Fence:
    """How a run writes: ``write()`` is a transaction that commits only while the run's
    claim holds its jobs, ``check()`` stops the run early once the lease is known lost.
    The unfenced default suits runs outside the job queue (tests, tools)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url

    def check(self) -> None:
        """Raises LeaseLost when the run must stop."""

    def write(self) -> contextlib.AbstractContextManager[Session]:
        return engine.transaction(url=self.url)


class Reconciler:
    def __init__(self, drivers: Drivers, url: str | None = None) -> None:
        self.d = drivers
        self.url = url

    def run(self, claim: Claim, fence: Fence | None = None) -> None:
        _Run(self.d, self.url, claim, fence or Fence(self.url)).run()


class _Run:
    """One reconcile of one claim."""

    def __init__(self, drivers: Drivers, url: str | None, claim: Claim, fence: Fence) -> None:
        self.d = drivers
        self.url = url
        self.claim = claim
        self.fence = fence
        self.replacing: set[str] = set()  # amphorae left out of the pair's peers
        self.started = time.monotonic()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with engine.transaction(write=False, url=self.url) as session:
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        self.fence.check()
        with self.fence.write() as session:
            yield session

    def run(self) -> None:
        lb_id = self.claim.load_balancer_id
        if lb_id is None:  # jobs about amphorae that belong to no load balancer
            for amp_id in self.claim.amphorae_for(c.JOB_DELETE_AMPHORA):
                self._destroy(amp_id)
            return
        with self._read() as session:
            lb = session.get(m.LoadBalancer, lb_id)
            status = None if lb is None else lb.provisioning_status
            topology = str(None if lb is None else lb.topology or c.TOPOLOGY_SINGLE)
        if status is None:
            return
        if status in (c.PENDING_DELETE, c.DELETED):
            self._tear_down(lb_id)
            return
        draining: list[str] = []
        try:
            if topology == c.TOPOLOGY_ACTIVE_ACTIVE:
                amps, doomed, draining = self._ensure_active_active(lb_id)
            else:
                amps, doomed = self._ensure_amphorae(lb_id, topology)
            self.replacing = set(doomed)
            if topology == c.TOPOLOGY_SINGLE:
                # The replacement takes the same VIP (and MAC): the old one must go first.
                each(self._destroy, doomed)
                doomed = []
            failed = self._ensure_ports(lb_id, topology, amps)
            with self._read() as session:
                tls = certificates.collect(session, lb_id, self.d.cert_manager)
            for object_id, reason in tls.failed.items():
                LOG.error("load balancer %s: %s left out, now ERROR: %s", lb_id, object_id,
                          reason)
            failed |= set(tls.failed)
            failed |= self._configure(lb_id, topology, amps, failed, tls)
            if topology == c.TOPOLOGY_ACTIVE_ACTIVE:
                doomed = self._distribute_and_drain(lb_id, amps, draining, doomed)
        except (OperationalError, LeaseLost, NotYet):
            raise  # the database is away, the jobs are another worker's now, or a boot
            # goes on: the worker gives the jobs back
        except Exception as exc:
            if not isinstance(exc, (BuildError, ConfigRefused)):  # a bug: its traceback
                LOG.exception("reconcile of load balancer %s failed", lb_id)
            with self._write() as session:
                completion.fail(session, lb_id)
                changes.failed(session, lb_id, str(exc), self._seconds())
            return
        each(self._destroy, doomed)
        with self._write() as session:
            changed = changes.pending(session, lb_id)
            completion.complete(session, lb_id, failed)
            changes.applied(session, lb_id, changed, self._seconds(), failed, self.replacing)

    def _seconds(self) -> float:
        return time.monotonic() - self.started

    # -- amphorae ----------------------------------------------------------------------

    def _ensure_amphorae(self, lb_id: str, topology: str) -> tuple[list[m.Amphora], list[str]]:
        """The amphorae that serve the load balancer (booted as needed) and the ids of
        those to remove once the new ones carry the configuration."""
        wanted = ROLES.get(topology)
        if wanted is None:
            raise BuildError(f"unknown topology {topology!r}")
        replace = set().union(*(self.claim.amphorae_for(j) for j in REPLACING_JOBS))
        with self._read() as session:
            rows = list(session.scalars(select(m.Amphora).where(
                m.Amphora.load_balancer_id == lb_id, m.Amphora.status != c.DELETED)
                .order_by(m.Amphora.created_at)))
        if self.claim.has(c.JOB_FAILOVER_LB):  # not the replacements it is booting
            replace |= {row.id for row in rows if row.status != c.AMPHORA_BOOTING}
        keep: dict[str, m.Amphora] = {}
        booting: dict[str, m.Amphora] = {}  # a boot an earlier run started
        doomed = []
        for row in rows:
            if (row.status == c.AMPHORA_BOOTING and row.id not in replace
                    and row.role in wanted and row.role not in booting):
                booting[row.role] = row
            elif (row.id in replace or row.role not in wanted or row.role in keep
                    or row.status not in c.AMPHORA_SERVING
                    or self.d.compute.status(row.id) != compute_base.ACTIVE):
                doomed.append(row.id)
            else:
                keep[row.role] = row
        # A serving amphora wins over a boot left from before: that one goes.
        doomed += [row.id for role, row in booting.items() if role in keep]
        missing = [role for role in wanted if role not in keep]
        group = (self.d.compute.create_server_group(lb_id)
                 if missing and topology == c.TOPOLOGY_ACTIVE_STANDBY else None)
        booted = each(lambda role: self._boot(lb_id, role, booting.get(role), group), missing)
        waiting = [role for role, row in zip(missing, booted, strict=True) if row is None]
        if waiting:
            wait = config.CONF.controller_worker.amp_active_wait_sec
            raise NotYet(wait, f"load balancer {lb_id}: amphorae ({', '.join(waiting)}) "
                               f"still booting; checked again in {wait} s")
        keep.update(zip(missing, booted, strict=True))  # type: ignore[arg-type]
        return [keep[role] for role in wanted], doomed

    def _ensure_active_active(self, lb_id: str
                              ) -> tuple[list[m.Amphora], list[str], list[str]]:
        """ACTIVE_ACTIVE's amphorae: the serving ones (booted as needed, up to
        scale.desired), those to remove, and those draining (active_active.plan). A dead
        one leaves the distributor before anything else is done."""
        if not self.d.network.distributes:
            raise BuildError(f"ACTIVE_ACTIVE needs a network driver with a distributor; "
                             f"{type(self.d.network).__name__} has none")
        replace = set().union(*(self.claim.amphorae_for(j) for j in REPLACING_JOBS))
        with self._read() as session:
            lb = session.get_one(m.LoadBalancer, lb_id)
            wanted = scale.desired(session, lb)
            rows = {row.id: row for row in session.scalars(select(m.Amphora).where(
                m.Amphora.load_balancer_id == lb_id, m.Amphora.status != c.DELETED))}
        if self.claim.has(c.JOB_FAILOVER_LB):
            replace |= {i for i, row in rows.items() if row.status != c.AMPHORA_BOOTING}
        seats = [active_active.Seat(
            row.id, row.status, row.created_at or utcnow(),
            row.status == c.AMPHORA_BOOTING
            or self.d.compute.status(row.id) == compute_base.ACTIVE) for row in rows.values()]
        plan = active_active.plan(seats, wanted, replace)
        self._set_status(plan.drain, active_active.DRAINING)
        self._set_status(plan.revive, c.AMPHORA_ALLOCATED)
        draining = [*plan.draining, *plan.drain]
        if plan.doomed and plan.keep:  # only the dead ones' flows may suffer
            try:
                self._distribute(lb_id, [*plan.keep, *plan.revive], draining)
            except Exception as exc:  # the full ensure below tries again
                LOG.warning("load balancer %s: distributor not updated before the "
                            "replacement: %s", lb_id, exc)
        starts: list[m.Amphora | None] = [rows[i] for i in plan.resume]
        booted = each(lambda row: self._boot(lb_id, c.ROLE_ACTIVE, row),
                      [*starts, *[None] * plan.boot])
        if any(row is None for row in booted):
            each(self._destroy, list(plan.doomed))
            wait = config.CONF.controller_worker.amp_active_wait_sec
            raise NotYet(wait, f"load balancer {lb_id}: amphorae still booting; "
                               f"checked again in {wait} s")
        amps = [rows[i] for i in (*plan.keep, *plan.revive)] + booted  # type: ignore[operator]
        return amps, list(plan.doomed), draining

    def _set_status(self, amp_ids: Sequence[str], status: str) -> None:
        if not amp_ids:
            return
        with self._write() as session:
            for amp_id in amp_ids:
                row = session.get_one(m.Amphora, amp_id)
                row.status, row.updated_at = status, utcnow()
            LOG.info("amphorae %s now %s", ", ".join(amp_ids), status)

    def _distribute(self, lb_id: str, serving: Sequence[str], draining: Sequence[str]
                    ) -> None:
        with self._read() as session:
            vip = session.get_one(m.Vip, lb_id)
            vips = (vip.ip_address, *_extra_vips(session, lb_id, vip.subnet_id or ""))
        self.fence.check()
        self.d.network.ensure_distributor(net.Distribution(
            load_balancer_id=lb_id, subnet_id=vip.subnet_id or "",
            vips=tuple(v for v in vips if v), serving=(*serving, *draining),
            draining=tuple(draining)))

    def _distribute_and_drain(self, lb_id: str, amps: list[m.Amphora],
                              draining: list[str], doomed: list[str]) -> list[str]:
        """The configured amphorae into the distributor; the draining ones out of it
        and removed once drained (until then the run is due again in DRAIN_POLL s, the
        dead ones removed first). Returns the amphorae still to remove."""
        serving = [amp.id for amp in amps]
        self._distribute(lb_id, serving, draining)
        if not draining:
            return doomed
        gone = [amp_id for amp_id in draining if self._drained(lb_id, amp_id)]
        left = [amp_id for amp_id in draining if amp_id not in gone]
        if gone:
            self._distribute(lb_id, serving, left)
        each(self._destroy, [*doomed, *gone])
        if left:
            raise NotYet(DRAIN_POLL, f"load balancer {lb_id}: amphorae {', '.join(left)} "
                                     "draining")
        return []

    def _drained(self, lb_id: str, amp_id: str) -> bool:
        idle = self.d.network.distributor_idle(lb_id, amp_id)
        with self._read() as session:
            row = session.get_one(m.Amphora, amp_id)
            started = row.updated_at or row.created_at or utcnow()
            health = session.get(m.AmphoraHealth, amp_id)
            reported = health is not None and health.last_update > started
            connections = session.scalar(
                select(func.coalesce(func.sum(m.ListenerStatistics.active_connections), 0))
                .where(m.ListenerStatistics.amphora_id == amp_id)) if reported else None
        done = active_active.drained(idle, connections, started, utcnow(),
                                     config.CONF.autoscaling.drain_timeout)
        if done:
            LOG.info("load balancer %s: amphora %s drained after %.1f s (idle %.1f s, "
                     "%s connections)", lb_id, amp_id, (utcnow() - started).total_seconds(),
                     idle, connections)
        return done

    def _boot(self, lb_id: str, role: str, row: m.Amphora | None = None,
              server_group_id: str | None = None) -> m.Amphora | None:
        """Boot an amphora for ``role``, or follow the boot ``row`` records; None while
        the compute driver still builds it."""
        if row is None:
            row = m.Amphora(id=str(uuid.uuid4()), load_balancer_id=lb_id, role=role,
                            status=c.AMPHORA_BOOTING, vrrp_priority=_priority(role),
                            created_at=utcnow())
            with self._write() as session:
                session.add(row)
        amp_id, started = row.id, row.created_at or utcnow()
        try:
            booted = self.d.compute.build(amp_id, server_group_id)
            if booted.status not in (compute_base.ACTIVE, compute_base.BUILDING):
                raise BuildError(f"its compute instance is {booted.status}")
            if booted.status == compute_base.BUILDING:
                cw = config.CONF.controller_worker
                limit = cw.amp_active_retries * cw.amp_active_wait_sec
                if (utcnow() - started).total_seconds() > limit:
                    raise BuildError(f"not ACTIVE after {limit} s ([controller_worker] "
                                     "amp_active_retries x amp_active_wait_sec)")
        except Exception as exc:
            self._destroy(amp_id)
            raise BuildError(f"amphora {amp_id} did not boot: {exc}") from exc
        with self._write() as session:
            row = session.get_one(m.Amphora, amp_id)
            row.compute_id = booted.compute_id or row.compute_id
            if booted.status == compute_base.BUILDING:
                return None
            row.lb_network_ip = booted.lb_network_ip
            row.cert_expiration = booted.cert_expiration
            row.status = c.AMPHORA_ALLOCATED
            seconds = booted.boot_seconds or (utcnow() - started).total_seconds()
            events.record(session, events.AMPHORA_BOOTED,
                          f"amphora {amp_id} ({role}){events.of_load_balancer(session, lb_id)}"
                          f" booted in {seconds:.2f} s", resource_type="amphora",
                          resource_id=amp_id, load_balancer_id=lb_id)
        return row

    def _destroy(self, amp_id: str) -> None:
        """Remove an amphora with its ports, addresses and rows; fine when half-made."""
        with self._read() as session:
            row = session.get(m.Amphora, amp_id)
            compute_id = row.compute_id if row is not None else None
        self.fence.check()
        self.d.network.unplug(amp_id, compute_id)
        self.d.compute.delete(amp_id)
        with self._write() as session:
            row = session.get(m.Amphora, amp_id)
            if row is not None:
                row.status = c.DELETED
                events.record(session, events.AMPHORA_REMOVED, f"amphora {amp_id}"
                              f"{events.of_load_balancer(session, row.load_balancer_id)} "
                              "removed", resource_type="amphora", resource_id=amp_id,
                              load_balancer_id=row.load_balancer_id)
            health = session.get(m.AmphoraHealth, amp_id)
            if health is not None:
                session.delete(health)

    def _tear_down(self, lb_id: str) -> None:
        with self._read() as session:
            amp_ids = list(session.scalars(select(m.Amphora.id).where(
                m.Amphora.load_balancer_id == lb_id, m.Amphora.status != c.DELETED)))
        self.fence.check()
        self.d.network.remove_distributor(lb_id)  # first: it sends to the amphorae
        each(self._destroy, amp_ids)
        self.fence.check()
        self.d.compute.delete_server_group(lb_id)
        self.d.network.deallocate_vip(lb_id)
        with self._write() as session:
            completion.complete(session, lb_id)
            changes.applied(session, lb_id, {}, self._seconds())

    # -- ports -------------------------------------------------------------------------

    def _ensure_ports(self, lb_id: str, topology: str, amps: list[m.Amphora]) -> set[str]:
        """Plug the VIP and member subnets into every amphora; returns the members whose
        subnet this network driver does not know (they go to ERROR)."""
        failed: set[str] = set()
        pair = topology == c.TOPOLOGY_ACTIVE_STANDBY
        with self._read() as session:
            vip = session.get(m.Vip, lb_id)
            subnet = self.d.network.get_subnet(vip.subnet_id) if vip and vip.subnet_id else None
            if vip is None or subnet is None or not vip.ip_address:
                raise BuildError(f"the VIP subnet {vip and vip.subnet_id} is unknown")
            addresses = (vip.ip_address, *_extra_vips(session, lb_id, subnet.id))
            security = vip_security.vip_security(session, lb_id, topology, addresses)
            member_subnets: dict[str, net.Subnet] = {}
            for member_id, subnet_id in session.execute(
                    select(m.Member.id, m.Member.subnet_id).join(m.Pool)
                    .where(m.Pool.load_balancer_id == lb_id,
                           m.Member.provisioning_status.not_in(desired.GONE))):
                if subnet_id is None or subnet_id == subnet.id:
                    continue
                found = self.d.network.get_subnet(subnet_id)
                if found is None:
                    LOG.error("member %s of load balancer %s: subnet %s is unknown",
                              member_id, lb_id, subnet_id)
                    failed.add(member_id)
                else:
                    member_subnets[found.id] = found
        distributed = topology == c.TOPOLOGY_ACTIVE_ACTIVE
        plug = net.VipPlug(load_balancer_id=lb_id, subnet_id=subnet.id, addresses=addresses,
                           vrrp=pair, distributed=distributed,
                           security_groups=security.security_groups)
        self.fence.check()
        self.d.network.secure_vip(security)  # before the ports that carry it
        plugged = each(lambda amp: self.d.network.plug(
            net.Amphora(amp.id, amp.compute_id or ""), plug, list(member_subnets.values())),
            amps)
        # A driver that gives a single amphora a port of its own on the VIP network too
        # (the no-op one, Neutron's) has it recorded, as Octavia does.
        if pair or distributed or all(ports.vrrp_port for ports in plugged):
            self._record_vrrp_ports(amps, plugged, vip)
        return failed

    def _record_vrrp_ports(self, amps: list[m.Amphora], plugged: list[net.AmphoraPorts],
                           vip: m.Vip) -> None:
        """Each pair member's own port on the VIP subnet onto its row (and ``amps``),
        written only where it changed."""
        wanted = {amp.id: _vrrp_fields(amp, ports, vip)
                  for amp, ports in zip(amps, plugged, strict=True)}
        stale = [amp for amp in amps
                 if any(getattr(amp, k) != v for k, v in wanted[amp.id].items())]
        if not stale:
            return
        with self._write() as session:
            for amp in stale:
                row = session.get_one(m.Amphora, amp.id)
                for key, value in wanted[amp.id].items():
                    setattr(row, key, value)
                    setattr(amp, key, value)

    # -- configuration ------------------------------------------------------------------

    def _configure(self, lb_id: str, topology: str, amps: list[m.Amphora], failed: set[str],
                   tls: TLSFiles) -> set[str]:
        """Push the configuration; when the amphora refuses it, push it again without
        the objects of the change (completion.suspects, round by round) and return
        those left out."""
        try:
            self._push(lb_id, topology, amps, failed, tls)
            return set()
        except ConfigRefused as exc:
            refusal = exc
            with self._read() as session:
                rounds = completion.suspects(session, lb_id)
        for suspects in rounds:
            suspects = suspects - failed
            LOG.error("load balancer %s: %s; trying without %s", lb_id, refusal,
                      ", ".join(sorted(suspects)))
            try:
                self._push(lb_id, topology, amps, failed | suspects, tls)
            except ConfigRefused as exc:
                refusal = exc
                continue
            for object_id in sorted(suspects):
                LOG.error("load balancer %s: %s left out of the configuration, now ERROR",
                          lb_id, object_id)
            return suspects
        raise refusal

    def _push(self, lb_id: str, topology: str, amps: list[m.Amphora], exclude: set[str],
              tls: TLSFiles) -> None:
        lb, vrrp, vip_subnet = self.desired(lb_id, topology, exclude | self.replacing)
        self.fence.check()
        refs = [amphora_ref(amp) for amp in amps]

        def apply(ref: AmphoraRef) -> None:
            self.d.amphora.apply(ref, lb, tls, vrrp, vip_subnet)

        if vrrp is None or not lb.listeners:
            each(apply, refs)
            return
        first = self._first_configured(lb, refs)
        each(apply, first)
        self._await_vip_holder(lb, first)
        each(apply, [ref for ref in refs if ref not in first])

    def _first_configured(self, lb: model.LoadBalancer, refs: list[AmphoraRef]
                          ) -> list[AmphoraRef]:
        """Which amphorae of a pair get their configuration before the others. While
        none holds the VIP (a new pair), the MASTER alone: with ``nopreempt`` the first
        keepalived whose check passes keeps the VIP, so configuring both at once would
        make the role a coin toss. Otherwise all of them at once."""
        masters = [ref for ref in refs if ref.role == c.ROLE_MASTER]
        if len(masters) in (0, len(refs)) or any(
                self.d.amphora.holds(ref, lb.vips[0]) for ref in refs):
            return refs
        return masters

    def _await_vip_holder(self, lb: model.LoadBalancer, refs: list[AmphoraRef]) -> None:
        """A pair is reported ACTIVE once one of its amphorae holds the VIP (keepalived's
        first election, a few adverts after it started), so that ACTIVE means traffic.
        A pair that serves no listener holds no VIP by design (its check script fails),
        so it is not waited for; one that elects nobody in time is logged, not failed:
        its configuration is in place and the health manager watches it."""
        deadline = time.monotonic() + VIP_HOLDER_WAIT
        while not any(self.d.amphora.holds(ref, lb.vips[0]) for ref in refs):
            if time.monotonic() > deadline:
                LOG.warning("load balancer %s: no amphora of the pair holds the VIP %s "
                            "%g s after its configuration was applied", lb.id, lb.vips[0],
                            VIP_HOLDER_WAIT)
                return
            self.fence.check()
            time.sleep(VIP_HOLDER_POLL)

    def desired(self, lb_id: str, topology: str, exclude: set[str]
                ) -> tuple[model.LoadBalancer, VRRPGroup | None, VipSubnet]:
        """The render model, the pair's VRRP group and the VIP subnet's shape."""
        with self._write() as session:  # the VRRP group row is made on first use
            lb = desired.load_balancer_model(session, lb_id, exclude=exclude)
            if lb is None:
                raise BuildError("the load balancer disappeared")
            vip = session.get_one(m.Vip, lb_id)
            vrrp = (_vrrp_group(session, lb_id) if topology == c.TOPOLOGY_ACTIVE_STANDBY
                    else None)
        shape = vip_subnet(self.d.network, vip.subnet_id)
        if shape is None:
            raise BuildError(f"the VIP subnet {vip.subnet_id} is unknown")
        return lb, vrrp, shape


def vip_subnet(network: net.NetworkDriver, subnet_id: str | None) -> VipSubnet | None:
    """The VIP subnet's shape as keepalived needs it; None when the driver knows no such
    subnet."""
    subnet = network.get_subnet(subnet_id or "")
    return None if subnet is None else VipSubnet(subnet.cidr.prefixlen, subnet.gateway_ip)


def amphora_ref(amp: m.Amphora) -> AmphoraRef:
    return AmphoraRef(id=amp.id, role=amp.role or c.ROLE_STANDALONE,
                      management_ip=amp.lb_network_ip or "", vrrp_ip=amp.vrrp_ip)


def each(work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``work`` on every item, the amphorae of a pair side by side; results in order.
    Every item runs to its end before the first error (if any) is raised."""
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(len(items), thread_name_prefix="amphora") as pool:
        futures = [pool.submit(work, item) for item in items]
        wait(futures)
    return [f.result() for f in futures]


def _vrrp_fields(amp: m.Amphora, ports: net.AmphoraPorts, vip: m.Vip) -> dict[str, str | None]:
    """A pair member's own address on the VIP subnet, as Octavia's amphora row has it."""
    if ports.vrrp_port is None:
        raise BuildError(f"amphora {amp.id} got no VRRP port")
    return {"vrrp_ip": ports.vrrp_port.ip_address, "vrrp_port_id": ports.vrrp_port.id,
            "ha_ip": vip.ip_address, "ha_port_id": vip.port_id,
            "vrrp_interface": c.AMPHORA_VIP_INTERFACE}


def _extra_vips(session: Session, lb_id: str, subnet_id: str) -> list[str]:
    """Additional VIPs on the primary VIP's subnet (other subnets are not plugged yet)."""
    return [a for a in session.scalars(select(m.AdditionalVip.ip_address).where(
        m.AdditionalVip.load_balancer_id == lb_id, m.AdditionalVip.subnet_id == subnet_id))
        if a]


def _vrrp_group(session: Session, lb_id: str) -> VRRPGroup:
    row = session.get(m.VRRPGroup, lb_id)
    if row is None:
        alphabet = string.ascii_letters + string.digits
        row = m.VRRPGroup(load_balancer_id=lb_id, vrrp_group_name=lb_id.replace("-", ""),
                          vrrp_auth_type="PASS",
                          vrrp_auth_pass="".join(secrets.choice(alphabet) for _ in range(8)),
                          advert_int=_advert_int())
        session.add(row)
    return vrrp_group(row)


def vrrp_group(row: m.VRRPGroup) -> VRRPGroup:
    return VRRPGroup(auth_pass=row.vrrp_auth_pass or "", advert_int=row.advert_int or 1)


def _priority(role: str) -> int | None:
    return priority_for(role) if role in (c.ROLE_MASTER, c.ROLE_BACKUP) else None


def _advert_int() -> float:
    return float(config.CONF.keepalived_vrrp.vrrp_advert_int)

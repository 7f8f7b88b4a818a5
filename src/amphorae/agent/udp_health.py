"""Health checks of UDP pool members, run by the agent, which rewrites the nftables rules
(contract.nftables) whenever the set of healthy members changes.

The controller sends the UDP part of the load balancer (contract.udp_config) instead of a
rendered script: the rules must be rendered here, where the health is known, so the
nftables format is part of the contract the agent shares with the controller.

Semantics follow Octavia's UDP path (keepalived LVS ``real_server`` checks) with
HAProxy's counting, as the API documents it:

- Only pools of enabled UDP listeners with an enabled monitor are checked; every enabled
  member every ``delay`` seconds, each check bounded by ``timeout`` (udp_probes), at
  ``monitor_address``/``monitor_port`` when set. Other pools take all enabled members.
- Members start UP (keepalived without ``alpha`` puts every real server in the virtual
  service at start, and Octavia restarts it on every change); ``max_retries_down``
  consecutive failures make one DOWN, ``max_retries`` consecutive successes UP again.
  A new configuration keeps the state of a member whose check is the same (pool, member,
  target and monitor unchanged); the others start UP.
- A pool without a healthy member gets no DNAT rule: its packets reach the amphora
  itself, where nothing listens, and clients get ICMP port unreachable, which is what
  IPVS does for a virtual service without an available real server.
- Conntrack keeps flows that are running on the member they started on; new flows
  follow the new rules (IPVS's default, ``expire_nodest_conn = 0``, does the same).

One scheduler thread per agent (so per amphora; :meth:`UdpHealth.start`) starts due
checks on a small thread pool and applies a new rule set when a result changed the
healthy set. The document is kept at ``<base>/udp.d/config.json``;
:meth:`UdpHealth.restore` resumes after an agent restart (members UP again, as after a
keepalived restart).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amphorae.agent import haproxy as hap
from amphorae.agent import nftables as nft
from amphorae.agent import udp_probes
from amphorae.common import constants
from amphorae.contract import model, udp_config
from amphorae.contract import nftables as nft_rules

LOG = logging.getLogger(__name__)

MAX_PROBE_THREADS = 16
# Statuses in the heartbeat, as Octavia's LVS query reports them.
UP, DOWN, DRAIN, MAINT, NO_CHECK = "UP", "DOWN", "DRAIN", "MAINT", "no check"

Key = tuple[str, str]  # (pool id, member id)
Runner = Callable[[Callable[[], None]], object]


class UdpConfigError(Exception):
    """The document cannot be used (bad JSON, bad model, unsupported monitor)."""


@dataclasses.dataclass
class MemberHealth:
    """Rise/fall counting of one member; only consecutive results count."""

    up: bool = True
    successes: int = 0  # in a row, while DOWN
    failures: int = 0  # in a row, while UP
    busy: bool = False  # a check is running

    def record(self, ok: bool, rise: int, fall: int) -> bool:
        """Count one result; True when it changed the state."""
        if ok:
            self.failures = 0
            self.successes = 0 if self.up else self.successes + 1
            if not self.up and self.successes >= max(rise, 1):
                self.up, self.successes = True, 0
                return True
        else:
            self.successes = 0
            self.failures = self.failures + 1 if self.up else 0
            if self.up and self.failures >= max(fall, 1):
                self.up, self.failures = False, 0
                return True
        return False


@dataclasses.dataclass(frozen=True)
class Check:
    """One member's check as configured: a changed one starts over."""

    pool_id: str
    member_id: str
    target: udp_probes.Target
    monitor: model.HealthMonitor

    def same(self, other: Check) -> bool:
        # The interval may change without touching the member's state.
        return (self.target == other.target and dataclasses.replace(self.monitor, delay=0)
                == dataclasses.replace(other.monitor, delay=0))


def monitored_pools(lb: model.LoadBalancer) -> list[model.Pool]:
    """Enabled pools behind enabled UDP listeners that have an enabled monitor."""
    return [pool for pool in _served_pools(lb)
            if pool.health_monitor is not None and pool.health_monitor.enabled]


def _served_pools(lb: model.LoadBalancer) -> list[model.Pool]:
    if not lb.enabled:
        return []
    pools: dict[str, model.Pool] = {}
    for listener in lb.listeners:
        pool = lb.pool(listener.default_pool_id)
        if listener.enabled and listener.protocol == constants.UDP and pool and pool.enabled:
            pools[pool.id] = pool
    return list(pools.values())


def checks_of(lb: model.LoadBalancer) -> dict[Key, Check]:
    return {(pool.id, m.id): Check(pool.id, m.id, udp_probes.Target.of(m),
                                   pool.health_monitor)
            for pool in monitored_pools(lb) if pool.health_monitor is not None
            for m in pool.members if m.enabled}


class UdpHealth:
    """The UDP listeners' member health of one amphora, and the rules that follow it.

    ``rules`` applies scripts; ``probes`` maps monitor types to checks (tests pass fakes);
    ``clock`` is monotonic seconds. Thread-safe.
    """

    def __init__(self, rules: nft.Nftables, base_path: str | os.PathLike[str], *,
                 probes: Mapping[str, udp_probes.Probe] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.path = Path(base_path) / "udp.d" / "config.json"
        self.probes = dict(udp_probes.PROBES if probes is None else probes)
        self.clock = clock
        self._lock = threading.RLock()
        self._lb: model.LoadBalancer | None = None
        self._checks: dict[Key, Check] = {}
        self._health: dict[Key, MemberHealth] = {}
        self._due: dict[str, float] = {}  # pool id -> when its next round starts
        self._dirty = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- configuration ------------------------------------------------------------------

    def configure(self, data: bytes) -> None:
        """Take a new document: check it, apply its rules (members whose check did not
        change keep their state), store it; the thread checks from now on. On any error
        nothing changes. Raises UdpConfigError, or nft.NftError when nft refuses."""
        lb = self._parse(data)
        with self._lock:
            checks = checks_of(lb)
            health = {key: self._health[key] if key in self._checks
                      and self._checks[key].same(check) else MemberHealth()
                      for key, check in checks.items()}
            self.rules.apply(nft_rules.render(lb, _healthy(checks, health)).encode())
            self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            hap.write_file(self.path, data, 0o600)
            self._set(lb, checks, health)

    def _parse(self, data: bytes) -> model.LoadBalancer:
        try:
            lb = udp_config.parse(data)
            nft_rules.render(lb)  # ids nft cannot carry, addresses of no family
            checks_of(lb)  # a monitor_address that is no IP address
        except ValueError as exc:
            raise UdpConfigError(str(exc)) from None
        for pool in monitored_pools(lb):
            kind = pool.health_monitor.type if pool.health_monitor else None
            if kind not in self.probes:
                raise UdpConfigError(f"pool {pool.id}: health monitor type {kind} is not "
                                     f"supported for UDP pools ({', '.join(self.probes)})")
        return lb

    def _set(self, lb: model.LoadBalancer | None, checks: dict[Key, Check],
             health: dict[Key, MemberHealth]) -> None:
        now = self.clock()
        self._lb, self._checks, self._health = lb, checks, health
        pools = {check.pool_id for check in checks.values()}
        # A new pool is checked at once; a known one keeps its rhythm.
        self._due = {pool_id: self._due.get(pool_id, now) for pool_id in pools}
        self._dirty = False
        self._wake.set()

    def document(self) -> bytes | None:
        """The document in force (None: none)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def restore(self) -> bool:
        """Resume with the stored document after an agent restart; False if none (or
        unusable: the rules in force then stay as they are, unchecked)."""
        data = self.document()
        if data is None:
            return False
        try:
            self.configure(data)
        except Exception as exc:  # the agent must come up all the same
            LOG.error("stored UDP configuration %s not resumed: %s", self.path, exc)
            return False
        return True

    def release(self) -> None:
        """Stop checking and forget the document; the rules stay as they are."""
        with self._lock:
            self.path.unlink(missing_ok=True)
            self._set(None, {}, {})

    def apply_script(self, script: bytes) -> None:
        """Apply a rendered script (PUT /nftables): the script owns the table from now
        on, so health checking stops, unless nft refuses it."""
        with self._lock:
            self.rules.apply(script)
            self.release()

    def delete(self) -> None:
        """No UDP listener any more: stop checking, remove the table."""
        with self._lock:
            self.rules.delete()
            self.release()

    # -- what the checks found ----------------------------------------------------------

    def healthy(self) -> dict[str, set[str]]:
        """Pool id -> the ids of its UP members, for the pools that are checked."""
        with self._lock:
            return _healthy(self._checks, self._health)

    def pool_statuses(self) -> dict[str, dict[str, Any]]:
        """Heartbeat ``pools`` entries of the UDP pools (keyed by the bare pool id, as
        Octavia's LVS listeners): ``{"status": UP|DOWN, "members": {id: status}}``."""
        with self._lock:
            if self._lb is None:
                return {}
            healthy = _healthy(self._checks, self._health)
            return {pool.id: _pool_status(pool, healthy.get(pool.id))
                    for pool in _served_pools(self._lb)}

    # -- the checks ----------------------------------------------------------------------

    def step(self, run: Runner) -> float:
        """Start the checks that are due with ``run`` (a thread pool's submit, or a call
        in tests), apply new rules if results changed the healthy set; the seconds until
        the next round is due."""
        with self._lock:
            now = self.clock()
            for pool_id, due in list(self._due.items()):
                if due > now:
                    continue
                round_ = [(key, check) for key, check in self._checks.items()
                          if key[0] == pool_id]
                delay = max(round_[0][1].monitor.delay, 1) if round_ else 1
                # Keep the rhythm; after a stall, a full delay (no rounds back to back).
                self._due[pool_id] = due + delay if due + delay > now else now + delay
                for key, check in round_:
                    state = self._health[key]
                    if not state.busy:  # a slow check is not started twice
                        state.busy = True
                        run(lambda k=key, c=check, s=state: self._check(k, c, s))
            self._apply_if_changed()
            return max(min(self._due.values(), default=now + 3600) - now, 0.0)

    def _check(self, key: Key, check: Check, state: MemberHealth) -> None:
        try:
            ok = bool(self.probes[check.monitor.type](check.target, check.monitor))
        except Exception:  # a probe must not take the checker down
            LOG.exception("health check of member %s failed to run", check.member_id)
            ok = False
        with self._lock:
            state.busy = False
            if self._health.get(key) is not state:
                return  # reconfigured meanwhile: the member's check is another one now
            monitor = self._checks[key].monitor  # the thresholds in force
            if state.record(ok, monitor.max_retries, monitor.max_retries_down):
                LOG.info("member %s of pool %s (%s port %d) is %s", check.member_id,
                         check.pool_id, check.target.address, check.target.port,
                         UP if state.up else DOWN)
                self._dirty = True
                self._wake.set()

    def _apply_if_changed(self) -> None:
        if not self._dirty or self._lb is None:
            return
        self._dirty = False
        try:
            self.rules.apply(nft_rules.render(self._lb, _healthy(self._checks,
                                                                 self._health)).encode())
        except nft.NftError as exc:  # the rules rendered at configure time were accepted
            LOG.error("nftables refused the rules for the healthy members: %s",
                      exc.details)

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._pool = concurrent.futures.ThreadPoolExecutor(
                MAX_PROBE_THREADS, thread_name_prefix="udp-probe")
            self._thread = threading.Thread(target=self._run, name="udp-health",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, pool = self._thread, self._pool
            self._thread = self._pool = None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        pool = self._pool
        assert pool is not None
        while not self._stop.is_set():
            self._wake.clear()
            try:
                wait = self.step(pool.submit)
            except Exception:  # keep checking whatever one round did
                LOG.exception("UDP health check round failed")
                wait = 1.0
            self._wake.wait(wait)


def _healthy(checks: Mapping[Key, Check],
             health: Mapping[Key, MemberHealth]) -> dict[str, set[str]]:
    pools: dict[str, set[str]] = {check.pool_id: set() for check in checks.values()}
    for (pool_id, member_id), state in health.items():
        if state.up:
            pools[pool_id].add(member_id)
    return pools


def _pool_status(pool: model.Pool, up: set[str] | None) -> dict[str, Any]:
    """``up`` is None for a pool without checks."""
    members = {}
    for member in pool.members:
        if not member.enabled:
            status = MAINT
        elif up is None:
            status = NO_CHECK
        elif member.id not in up:
            status = DOWN
        else:
            status = DRAIN if member.weight == 0 else UP
        members[member.id] = status
    serving = nft_rules.select_members(pool, up)
    return {"status": UP if serving else DOWN, "members": members}

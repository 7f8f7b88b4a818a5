"""The health manager: receives heartbeats (asyncio, UDP) and watches for stale amphorae.

Receiving never waits on the database: datagrams are authenticated, decoded and checked
against replays in the event loop, and queued; a writer thread, woken by the first
heartbeat queued, takes everything queued :data:`FLUSH_INTERVAL` later and writes it
in one transaction (health/update.py). Dropped
datagrams are counted by reason (unsigned, forged, truncated, oversized, malformed,
replayed, ...) and never raise. A second thread runs the stale check
(health/stale.py) every ``health_check_interval``. While the manager's own writes fail,
and for ``heartbeat_timeout`` after they succeed again, no amphora is failed over for
silence (health/grace.py): its heartbeats were lost here, not by the amphora.

Every :data:`STATS_INTERVAL` while heartbeats come, and once more on stop, the counters
(cumulative) and the batch write times of the interval are logged in one line
(:meth:`HealthManager.counters_line`; bench/health.py reads it): at INFO when
heartbeats were refused or lost since the last line (a :data:`NOTABLE` counter grew),
and on stop; at DEBUG otherwise, so a healthy fleet's log is not one line per 10 s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from amphorae.common import config
from amphorae.common import heartbeat as codec
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, outage
from amphorae.drivers import registry
from amphorae.drivers.compute import base as compute_base
from amphorae.health import autoscale, grace, stale, update
from amphorae.health.metrics import HeartbeatMirror, failovers

LOG = logging.getLogger(__name__)
# Seconds between batch writes. Larger batches cost less per heartbeat (each transaction
# rewrites every page it touches, and rows of one batch share pages): at 5,000/s a batch
# of 1,000 takes about a quarter less CPU per heartbeat than one of 250 on SQLite, for
# statuses written 0.15 s later; far below any heartbeat_interval.
FLUSH_INTERVAL = 0.2
MAX_QUEUE = 100_000  # datagrams waiting for the writer; beyond it new ones are dropped
DRAIN = 256  # datagrams read per wake-up of the event loop, at most
STATS_INTERVAL = 10.0  # seconds between two counter lines in the log
# Counters always shown in the counter line, in this order (others follow when non-zero).
SHOWN = ("received", "accepted", *codec.REASONS, "replayed", "overflow", "error",
         "written", "withheld", "ignored", "write_failed")
# Counters whose growth is worth an INFO line: heartbeats refused or lost.
NOTABLE = (*codec.REASONS, "replayed", "overflow", "error", "write_failed")
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


class Receiver:
    """Checks one datagram at a time (fed by :func:`_drain`) and queues what passes."""

    def __init__(self, key: str, queue: collections.deque[update.Received],
                 counters: collections.Counter[str]) -> None:
        self.key = key
        self.queue = queue
        self.counters = counters
        self.guard = codec.ReplayGuard()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        self.counters["received"] += 1
        try:
            message = codec.decode(data, self.key)
        except codec.InvalidHeartbeat as exc:
            self.counters[exc.reason] += 1
            return
        except Exception:  # never let one datagram stop the receiver
            LOG.exception("heartbeat from %s could not be read", addr)
            self.counters["error"] += 1
            return
        if not self.guard.admit(message):
            self.counters["replayed"] += 1
            return
        if len(self.queue) >= MAX_QUEUE:
            self.counters["overflow"] += 1
            return
        self.counters["accepted"] += 1
        self.queue.append(update.Received(message, now))


@dataclasses.dataclass
class BatchTimes:
    """Batches written since the last counter line: how long their transactions took and
    the longest a heartbeat waited from arrival to its commit."""

    count: int = 0
    write_total: float = 0.0
    write_max: float = 0.0
    wait_max: float = 0.0

    def add(self, write: float, wait: float) -> None:
        self.count += 1
        self.write_total += write
        self.write_max = max(self.write_max, write)
        self.wait_max = max(self.wait_max, wait)


def _drain(sock: socket.socket, receiver: Receiver, buffer: bytearray) -> None:
    """Everything waiting on the socket, up to :data:`DRAIN` datagrams (then the event
    loop runs its other callbacks): one wake-up for many datagrams, each read into
    ``buffer`` and copied at its own size (asyncio's datagram transport takes one per
    wake-up and allocates 256 KiB for each)."""
    view = memoryview(buffer)
    for _ in range(DRAIN):
        try:
            size, addr = sock.recvfrom_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. an ICMP error queued on the socket: read on
            LOG.warning("heartbeat socket: %s", exc)
            continue
        receiver.datagram_received(bytes(view[:size]), addr)


class HealthManager:
    def __init__(self, url: str | None = None, conf: Any = config.CONF) -> None:
        hm = conf.health_manager
        self.url = url or config.database_url(conf)
        self.key = config.heartbeat_key(conf)
        self.compute = registry.compute(conf)
        self.bind, _ = config.heartbeat_endpoints(conf, self.compute.controller_address())
        self.interval = float(hm.heartbeat_interval)
        self.timeout = float(hm.heartbeat_timeout)
        self.check_interval = float(hm.health_check_interval)
        self.threshold = hm.failover_threshold
        self.queue: collections.deque[update.Received] = collections.deque()
        self.counters: collections.Counter[str] = collections.Counter()
        self.stopping = threading.Event()
        self.partition = False  # the circuit breaker is open (stale.py)
        self.grace = grace.Grace(self.timeout)
        self.ready = threading.Event()
        self.arrived = threading.Event()  # datagrams read since the writer last looked
        self.written = threading.Event()  # a batch committed since the autoscaler looked
        # When the last stale check saw no health row: ("written" then, monotonic time).
        # Until a heartbeat is written here only a gone instance gives the check work;
        # another health manager's writes are looked for once per heartbeat_timeout.
        self._silent_since: tuple[int, float] | None = None
        self._wake_receiver: Callable[[], object] = lambda: None
        self.batches = BatchTimes()
        self._logged: tuple[dict[str, int], float] = ({}, time.monotonic())
        self.mirror = HeartbeatMirror()  # the counters, into Prometheus
        a = conf.autoscaling
        self.autoscale_interval = float(a.interval)
        self.autoscaler = autoscale.scaler(self.url, conf) if a.enabled else None

    def socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # The management gateway appears with the first amphora's bridge: bind before.
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.bind(self.bind)
        return sock

    def run(self) -> None:
        threads = [threading.Thread(target=self._write_loop, name="health-writer"),
                   threading.Thread(target=self._stale_loop, name="health-stale")]
        if self.autoscaler is not None:
            threads.append(threading.Thread(target=self._autoscale_loop, name="autoscaler"))
        for thread in threads:
            thread.start()
        try:
            asyncio.run(self._receive())
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(10)

    def stop(self) -> None:
        self.stopping.set()
        self.arrived.set()
        self.written.set()
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            self._wake_receiver()

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.socket()
        sock.setblocking(False)
        receiver = Receiver(self.key, self.queue, self.counters)
        buffer = bytearray(codec.RECV_BUFFER)

        def readable() -> None:
            _drain(sock, receiver, buffer)
            self.arrived.set()  # counted or queued: the writer has news

        loop.add_reader(sock.fileno(), readable)
        # stop() comes from another thread: it wakes the loop, which otherwise sleeps.
        stopped = asyncio.Event()
        self._wake_receiver = lambda: loop.call_soon_threadsafe(stopped.set)
        LOG.info("health manager receiving heartbeats on %s port %d", *self.bind)
        self.ready.set()
        try:
            if not self.stopping.is_set():  # a stop before the wake-up was in place
                await stopped.wait()
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    def _write_loop(self) -> None:
        while not self.stopping.is_set() or self.queue:
            # Idle, only a heartbeat or the stop wakes this thread (and the counter line,
            # which has nothing new to say then); then it waits for a batch to gather.
            self.arrived.wait(STATS_INTERVAL)
            self.arrived.clear()
            time.sleep(FLUSH_INTERVAL)
            batch = []
            while self.queue:
                batch.append(self.queue.popleft())
            if batch:
                self._write(batch)
            self.mirror.update(self.counters)
            if time.monotonic() - self._logged[1] >= STATS_INTERVAL:
                self.log_counters()
        self.log_counters(final=True)

    def _write(self, batch: list[update.Received]) -> None:
        started = time.monotonic()
        try:
            with engine.transaction(url=self.url) as session:
                outcome = update.apply(session, batch, utcnow(), time.monotonic(),
                                       self.interval)
            self.grace.succeeded()
            self.written.set()
            self.counters["written"] += len(batch)
            self.counters["ignored"] += outcome.ignored
            self.counters["withheld"] += outcome.withheld
        except Exception as exc:
            self.grace.failed()
            outage.log_failure(LOG, f"writing {len(batch)} heartbeats failed", exc)
            self.counters["write_failed"] += len(batch)
        done = time.monotonic()
        self.batches.add(done - started, done - batch[0].received_at)

    def counters_line(self, seconds: float) -> str:
        """The cumulative counters, what is queued, and the batches of the last
        ``seconds``: ``name=value`` pairs, then the batch times."""
        counts = dict(self.counters)
        names = [*SHOWN, *sorted(set(counts) - set(SHOWN))]
        b = self.batches
        mean = b.write_total / b.count if b.count else 0.0
        return (" ".join(f"{name}={counts.get(name, 0)}" for name in names)
                + f" queued={len(self.queue)}; last {seconds:.2f} s: {b.count} batches, "
                f"write {mean * 1000:.1f} ms mean {b.write_max * 1000:.1f} ms max, "
                f"arrival to commit {b.wait_max * 1000:.0f} ms max")

    def log_counters(self, final: bool = False) -> None:
        """The counter line, when anything changed since the last one: at INFO when a
        :data:`NOTABLE` counter grew (or ``final``), else at DEBUG."""
        now = time.monotonic()
        counts, since = self._logged
        if dict(self.counters) != counts or self.queue:
            notable = final or any(self.counters[k] != counts.get(k, 0) for k in NOTABLE)
            LOG.log(logging.INFO if notable else logging.DEBUG, "heartbeats: %s",
                    self.counters_line(now - since))
        self.batches = BatchTimes()
        self._logged = (dict(self.counters), now)

    def _gone(self) -> list[str]:
        """Amphorae the compute driver sees broken (netns: the namespace is gone)."""
        return [i.amphora_id for i in self.compute.list_instances()
                if i.status == compute_base.ERROR]

    def _stale_loop(self) -> None:
        # The first check waits a whole timeout: amphorae must get a chance to report.
        if self.stopping.wait(self.timeout):
            return
        while not self.stopping.is_set():
            self.check_stale()
            self.stopping.wait(self.check_interval)

    def _autoscale_loop(self) -> None:
        # A sample per interval while heartbeats are written; with none there is no load
        # to sample, and an idle control plane stays asleep.
        while not self.stopping.wait(self.autoscale_interval):
            self.written.wait()
            self.written.clear()
            if not self.stopping.is_set():
                self.autoscale()

    def autoscale(self) -> None:
        """One look at every ACTIVE_ACTIVE load balancer's load (decisions are logged,
        counted and recorded as events where they are written)."""
        assert self.autoscaler is not None
        try:
            self.autoscaler.tick(time.monotonic())
        except Exception as exc:
            outage.log_failure(LOG, "autoscaling failed", exc)

    def check_stale(self) -> stale.CheckResult | None:
        """One stale check (None when it failed)."""
        try:
            gone = self._gone()
        except Exception:  # the compute side's trouble: check the heartbeats anyway
            LOG.exception("listing the amphora instances failed")
            gone = []
        written, now = self.counters["written"], time.monotonic()
        if not gone and self._silent_since is not None \
                and self._silent_since[0] == written \
                and now - self._silent_since[1] < self.timeout:
            return stale.CheckResult(stale=[], failed_over=[], stopped=[], watched=False)
        judging = self.grace.judging()  # before the transaction that may end a grace
        try:
            with engine.transaction(url=self.url) as session:
                result = stale.check(session, utcnow(), self.timeout, self.threshold,
                                     gone, judge_silence=judging)
        except Exception as exc:
            self.grace.failed()
            outage.log_failure(LOG, "stale amphora check failed", exc)
            return None
        self.grace.succeeded()
        self._silent_since = None if result.watched else (written, now)
        self.partition = bool(result.stopped)
        failovers(result.failed_over, gone)
        return result

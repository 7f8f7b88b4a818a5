"""The worker service: claims jobs and runs reconciles, several load balancers at once.

One thread claims (and sleeps on the wake-up when there is nothing to do), a pool of
threads reconciles, and every claim's lease is renewed while its reconcile runs. A
reconcile that raises (the database went away, a bug) is given back with a growing delay;
a target claimed too often without ever finishing — each worker that took it died — is
put in ERROR so it does not crash workers forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.db import engine, outage
from amphorae.drivers import registry
from amphorae.worker import completion, drift, wakeup
from amphorae.worker import metrics as worker_metrics
from amphorae.worker.queue import Claim, JobQueue, LeaseLost
from amphorae.worker.reconciler import Fence, NotYet, Reconciler
from amphorae.worker.wakeup import Wakeup

LOG = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
IDLE_WAIT = 1.0  # seconds before claiming again after the database failed
# The longest an idle worker sleeps: a job written wakes it (wakeup.py), a job due later
# is waited for exactly (JobQueue.next_due); this only covers a lost wake-up.
IDLE_BACKSTOP = 10.0


class QueueFence(Fence):
    """A claim's fence: writes commit only while the queue says the claim holds its
    jobs; the lease renewer marks it lost as soon as it finds out."""

    def __init__(self, queue: JobQueue, claim: Claim) -> None:
        super().__init__(queue.url)
        self.queue = queue
        self.claim = claim
        self.lost = threading.Event()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.claim.target)

    def write(self) -> contextlib.AbstractContextManager[Session]:
        return self.queue.fenced(self.claim)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_delay(attempts: int) -> float:
    return min(0.5 * 2 ** max(attempts - 1, 0), 30.0)


class Worker:
    def __init__(self, reconciler: Reconciler, queue: JobQueue,
                 wakeup: Wakeup, threads: int = 4,
                 drift_interval: float = 0.0) -> None:
        self.reconciler = reconciler
        self.drift_interval = drift_interval
        self.queue = queue
        self.wakeup = wakeup
        self.threads = threads
        self.stopping = threading.Event()
        self._inflight: dict[str, tuple[QueueFence, Future[None]]] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        """Until :meth:`stop`: claim, reconcile, finish. Reconciles in flight at the
        stop run to their end; their jobs are then done or handed back."""
        renewer = threading.Thread(target=self._renew_loop, name="lease-renewer",
                                   daemon=True)
        renewer.start()
        if self.drift_interval > 0:
            threading.Thread(target=self._drift_loop, name="drift-check", daemon=True).start()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="reconcile") as pool:
            while not self.stopping.is_set():
                if self._busy() < self.threads:
                    try:
                        claim = self.queue.claim(skip=self._targets())
                    except Exception as exc:  # the database is away: wait and try again
                        outage.log_failure(LOG, "claiming a job failed", exc)
                        self.stopping.wait(IDLE_WAIT)
                        continue
                    if claim is not None:
                        self._start(pool, claim)
                        continue
                self.wakeup.wait(self._idle_wait())
        self.wakeup.close()
        renewer.join(timeout=5)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.wakeup.interrupt()

    def _idle_wait(self) -> float:
        """How long to sleep with no job to claim: until the next job comes due."""
        try:
            due = self.queue.next_due()
        except Exception as exc:  # the database is away: the claim will say so
            outage.log_failure(LOG, "looking for the next due job failed", exc)
            return IDLE_WAIT
        return IDLE_BACKSTOP if due is None else min(due + 0.01, IDLE_BACKSTOP)

    def _busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _targets(self) -> set[str]:
        with self._lock:
            return set(self._inflight)

    def _start(self, pool: ThreadPoolExecutor, claim: Claim) -> None:
        if claim.attempts > MAX_ATTEMPTS:
            LOG.error("%s was claimed %d times without finishing; giving up: ERROR",
                      claim.target, claim.attempts - 1)
            worker_metrics.gave_up(claim)
            try:
                if claim.load_balancer_id:
                    with engine.transaction(url=self.queue.url) as session:
                        completion.fail(session, claim.load_balancer_id)
                self.queue.done(claim)
            except Exception as exc:  # its lease expires: the next claim gives up again
                outage.log_failure(LOG, f"giving up on {claim.target} failed", exc)
            return
        fence = QueueFence(self.queue, claim)
        started = time.monotonic()
        future = pool.submit(self.reconciler.run, claim, fence)
        with self._lock:
            self._inflight[claim.target] = (fence, future)
        future.add_done_callback(lambda f: self._finished(claim, f, started))

    def _finished(self, claim: Claim, future: Future[None], started: float) -> None:
        try:
            error = future.exception()
            worker_metrics.finished(claim, error, time.monotonic() - started)
            if error is None:
                self.queue.done(claim)
            elif isinstance(error, NotYet):  # an amphora boots: come back later
                LOG.info("%s; jobs of %s due again in %.0f s", error, claim.target,
                         error.delay)
                self.queue.defer(claim, error.delay)
            elif isinstance(error, LeaseLost):
                LOG.warning("stopped the reconcile of %s: another worker holds its jobs "
                            "now", claim.target)
            else:
                delay = retry_delay(claim.attempts)
                away = outage.unavailable(error)
                LOG.error("reconcile of %s failed (%s); again in %.1f s", claim.target,
                          outage.describe(error) if away else error, delay,
                          exc_info=None if away else error)
                self.queue.retry(claim, delay)
        except Exception as exc:  # the lease expires and the jobs come back by themselves
            outage.log_failure(LOG, f"finishing the jobs of {claim.target} failed", exc)
        finally:
            with self._lock:
                self._inflight.pop(claim.target, None)
            self._poke()  # a slot is free, and the target's newer jobs may be claimed

    def _poke(self) -> None:
        try:
            self.wakeup.poke()
        except Exception as exc:  # the claim loop's timeout is the backstop
            outage.log_failure(LOG, "waking the claim loop failed", exc)

    def _drift_loop(self) -> None:
        while not self.stopping.wait(self.drift_interval):
            try:  # the jobs it enqueues wake the claim loop as the API's do
                drift.drifted_load_balancers(self.reconciler.d, self.queue.url)
            except Exception as exc:  # the database is away: the next round tries again
                outage.log_failure(LOG, "drift check failed", exc)

    def _renew_loop(self) -> None:
        interval = max(self.queue.lease.total_seconds() / 3, 0.2)
        while True:
            if self.stopping.wait(interval):
                if not self._busy():
                    return
                time.sleep(min(interval, 1.0))  # draining: keep the leases of the rest
            with self._lock:
                claims = [fence.claim for fence, _ in self._inflight.values()]
            try:
                lost = self.queue.renew(claims)
                with self._lock:  # a claim finished meanwhile gave its jobs up itself
                    fences = [self._inflight[t][0] for t in lost if t in self._inflight
                              and not self._inflight[t][1].done()]
                for fence in fences:
                    LOG.warning("lost the lease of %s to another worker: stopping its "
                                "reconcile", fence.claim.target)
                    fence.lost.set()
            except Exception as exc:
                outage.log_failure(LOG, "renewing leases failed", exc)


def build(url: str | None = None) -> Worker:
    """A worker with the configured drivers, on the configured database."""
    url = url or config.database_url()
    conf = config.CONF.controller_worker
    return Worker(Reconciler(registry.load(), url),
                  JobQueue(worker_name(), conf.job_lease_seconds, url),
                  wakeup.for_url(url), threads=conf.reconcile_threads,
                  drift_interval=conf.drift_check_interval)

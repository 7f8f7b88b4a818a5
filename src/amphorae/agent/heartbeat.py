"""The agent's heartbeat sender (reference §5): every ``heartbeat_interval`` seconds one
UDP datagram, signed with ``heartbeat_key``, to the next controller of
``controller_ip_port_list`` (round robin), built from each HAProxy's ``show stat``.

Counters follow Octavia's version 3: bytes, total connections and request errors are sent
as the difference from the last *reported* absolute value, kept in a JSON file under the
base path so that a restarted agent does not report the same traffic twice; current
connections are absolute. A counter that went backwards (HAProxy restarted or reloaded)
is reported as its current value.

UDP pools (nftables, checked by the agent itself: udp_health) are added to ``pools``
under their bare pool id, as Octavia does for its LVS listeners.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from amphorae.agent import haproxy as hap
from amphorae.common import heartbeat as codec

LOG = logging.getLogger(__name__)

COUNTERS_FILE = "heartbeat-counters.json"
# Fields of a FRONTEND row, by their name in the heartbeat.
_LISTENER_FIELDS = {"tx": "bout", "rx": "bin", "conns": "scur", "totconns": "stot",
                    "ereq": "ereq"}
DELTA_FIELDS = ("tx", "rx", "totconns", "ereq")
# Proxies the renderer adds for itself, not for a listener or pool.
_INTERNAL_PREFIX = "prometheus"


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def member_status(status: str, weight: str | None) -> str:
    """A server row's status as the health manager reads it (reference §3.3)."""
    status = status.strip()
    if status.startswith("MAINT"):
        return "MAINT"  # "MAINT (via ...)", "MAINT (resolution)": admin down all the same
    if status.startswith("DRAIN") or status == "NOLB":
        return "DRAIN"
    if status == "UP" and _int(weight) == 0:
        return "DRAIN"  # HAProxy says UP for a server drained by a zero weight
    return status  # UP, DOWN, "UP 1/3", "DOWN 1/2", "no check"


def parse_show_stat(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``show stat`` CSV into (listeners, pools) with *absolute* listener counters.

    listeners: ``{listener_id: {"status": "OPEN", "stats": {tx, rx, conns, totconns,
    ereq}}}``; pools: ``{"<pool_id>:<listener_id>": {"status": "UP"|"DOWN",
    "members": {member_id: status}}}``. Rows of internal proxies are left out.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}, {}
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    listeners: dict[str, dict[str, Any]] = {}
    pools: dict[str, dict[str, Any]] = {}
    for row in reader:
        pxname, svname = row.get("pxname") or "", row.get("svname") or ""
        if not pxname or pxname.startswith(_INTERNAL_PREFIX):
            continue
        if svname == "FRONTEND":
            listeners[pxname] = {
                "status": (row.get("status") or "").strip(),
                "stats": {name: _int(row.get(field))
                          for name, field in _LISTENER_FIELDS.items()}}
        elif ":" not in pxname:
            continue  # a backend not named <pool>:<listener> is none of ours
        elif svname == "BACKEND":
            pool = pools.setdefault(pxname, {"members": {}})
            pool["status"] = "UP" if (row.get("status") or "").strip() == "UP" else "DOWN"
        else:
            pool = pools.setdefault(pxname, {"members": {}})
            pool["members"][svname] = member_status(row.get("status") or "",
                                                    row.get("weight"))
    for pool in pools.values():
        pool.setdefault("status", "DOWN")
    return listeners, pools


def load_share(show_info: str) -> float | None:
    """1 - HAProxy's ``Idle_pct`` / 100 from ``show info``: how much of its time HAProxy's
    loop spends working rather than waiting for events (None if not given)."""
    for line in show_info.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Idle_pct" and value.strip().isdigit():
            return round(1 - min(int(value), 100) / 100, 2)
    return None


def apply_deltas(listeners: dict[str, dict[str, Any]], last: dict[str, dict[str, int]]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """(listeners with v3 delta counters, the new last-reported absolute values).

    ``last`` is not modified. Listeners absent now keep their last values, so that a
    socket that did not answer once does not make its next answer count twice.
    """
    reported: dict[str, dict[str, Any]] = {}
    new_last = {key: dict(value) for key, value in last.items()}
    for listener_id, entry in listeners.items():
        absolute = entry["stats"]
        before = last.get(listener_id, {})
        stats = dict(absolute)
        for name in DELTA_FIELDS:
            delta = absolute[name] - int(before.get(name, 0))
            stats[name] = delta if delta >= 0 else absolute[name]  # reset: counts anew
        reported[listener_id] = {"status": entry["status"], "stats": stats}
        new_last[listener_id] = {name: absolute[name] for name in DELTA_FIELDS}
    return reported, new_last


def parse_controllers(entries: Iterable[str]) -> list[tuple[str, int]]:
    """``ip:port`` / ``[v6]:port`` entries as (host, port); bad entries are refused."""
    result = []
    for entry in entries:
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"controller {entry!r} is not ip:port")
        result.append((host.strip("[]"), int(port)))
    return result


class CounterStore:
    """The last reported absolute counters per listener, in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            LOG.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: {name: int(value.get(name, 0)) for name in DELTA_FIELDS}
                for key, value in data.items() if isinstance(value, dict)}

    def save(self, counters: dict[str, dict[str, int]]) -> None:
        hap.write_file(self.path, json.dumps(counters, sort_keys=True).encode(), 0o600)


class HeartbeatSender:
    """Owns the heartbeat loop of one agent: a daemon thread that sleeps between beats."""

    def __init__(self, amphora_id: str, key: str, controllers: Iterable[str],
                 interval: float, base_path: str | os.PathLike[str],
                 stats_sockets: Callable[[], Iterable[Path]],
                 may_send: Callable[[], bool] | None = None,
                 udp_pools: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        self.amphora_id = amphora_id
        self.key = key
        self.controllers = parse_controllers(controllers)
        if not self.controllers:
            raise ValueError("no controller to send heartbeats to")
        self.interval = max(float(interval), 0.1)
        self.stats_sockets = stats_sockets
        # Octavia sends nothing while a configured keepalived is down, so that the
        # amphora goes stale and is failed over; the agent passes that check here.
        self.may_send = may_send
        self.udp_pools = udp_pools  # UDP pool statuses from the agent's own checks
        self.store = CounterStore(Path(base_path) / COUNTERS_FILE)
        self.boot_id = uuid.uuid4().hex
        self.started_at = time.time()
        self.seq = 0
        self._next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def collect(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Absolute listeners and pools of every HAProxy that answers."""
        listeners: dict[str, dict[str, Any]] = {}
        pools: dict[str, dict[str, Any]] = {}
        for path in self.stats_sockets():
            try:
                text = hap.unix_command(path, "show stat")
            except OSError as exc:  # missing, stale (HAProxy stopped) or slow socket
                LOG.debug("no stats from %s: %s", path, exc)
                continue
            found_listeners, found_pools = parse_show_stat(text)
            listeners.update(found_listeners)
            pools.update(found_pools)
        if self.udp_pools is not None:
            pools.update(self.udp_pools())
        return listeners, pools

    def load(self) -> float | None:
        """The busiest HAProxy's busy share: what an ACTIVE_ACTIVE scaler watches."""
        shares = []
        for path in self.stats_sockets():
            try:
                share = load_share(hap.unix_command(path, "show info"))
            except OSError as exc:
                LOG.debug("no info from %s: %s", path, exc)
                continue
            if share is not None:
                shares.append(share)
        return max(shares, default=None)

    def beat(self) -> dict[str, Any] | None:
        """Build, send and account one heartbeat; the message, or None if not sent."""
        if self.may_send is not None and not self.may_send():
            LOG.warning("heartbeat withheld: this amphora is not fit to serve")
            return None
        listeners, pools = self.collect()
        last = self.store.load()
        reported, new_last = apply_deltas(listeners, last)
        message = codec.build_message(self.amphora_id, self.seq, reported, pools,
                                      boot_id=self.boot_id, started_at=self.started_at,
                                      load=self.load())
        try:
            datagram = codec.encode(message, self.key)
        except ValueError as exc:
            LOG.error("heartbeat not sent: %s", exc)
            return None
        host, port = self.controllers[self._next % len(self.controllers)]
        self._next += 1
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, address = infos[0]
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(datagram, address)
        except OSError as exc:
            # Not accounted: the next heartbeat carries this traffic instead.
            LOG.warning("heartbeat to %s port %d failed: %s", host, port, exc)
            return None
        self.seq += 1
        if new_last != last:
            try:
                self.store.save(new_last)
            except OSError as exc:
                LOG.error("cannot save heartbeat counters: %s", exc)
        return message

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        LOG.info("heartbeats every %ss to %s", self.interval,
                 ", ".join(f"{h}:{p}" for h, p in self.controllers))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # one bad beat must not end the heartbeats (and failover)
                LOG.exception("heartbeat failed")
            # A fixed cadence: the time a beat takes does not stretch the interval.
            deadline = max(deadline + self.interval, time.monotonic())
            self._stop.wait(deadline - time.monotonic())


def from_config(conf: Any, supervisor: hap.Supervisor,
                may_send: Callable[[], bool] | None = None,
                udp_pools: Callable[[], dict[str, dict[str, Any]]] | None = None
                ) -> HeartbeatSender | None:
    """The sender the configuration asks for, or None when heartbeats are not set up
    (no key, no controllers or no amphora id). ``may_send``, ``udp_pools``: see
    HeartbeatSender."""
    hm = conf.health_manager
    opts = conf.amphora_agent
    if not (hm.heartbeat_key and hm.controller_ip_port_list and opts.amphora_id):
        LOG.info("heartbeats off: [health_manager] heartbeat_key, controller_ip_port_list "
                 "and [amphora_agent] amphora_id are all needed")
        return None

    def sockets() -> list[Path]:
        return [supervisor.files(lb_id).stats_socket
                for lb_id in supervisor.load_balancers()]

    return HeartbeatSender(opts.amphora_id, hm.heartbeat_key, hm.controller_ip_port_list,
                           hm.heartbeat_interval, opts.base_path, sockets, may_send,
                           udp_pools)

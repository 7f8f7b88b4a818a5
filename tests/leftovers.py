"""What a killed test run left on the host, removed by the next run.

A test process registers what it is about to make on the host before making it: name
prefixes of namespaces and links (``amph-3fa9c1``), state directories (absolute paths),
PostgreSQL databases (``pg:<name>``), one a line in ``/run/amphorae-tests/<pid>-<start>``
(``<start>``: the process's start time, so a reused pid is another process). The file
stays when the process ends: a run that finished normally left nothing, and removing
nothing is cheap.

:func:`sweep` (a session fixture, at the start of every test process: the controller
and each xdist worker) removes what the files of processes that are gone list:
processes running from those directories or inside those namespaces, the amphora
namespaces recorded under the directories, the bridges marked with their deployment id
(drivers/network/ownership.py), namespaces and links with the prefixes, the databases,
then the directories and the file. A live process's file is never read: the other
workers of this run, and any other run going on, keep everything of theirs.

The Nova netns virt driver's instances (tests/nova_virt) are made by nova-compute, not by
the test: a test registers their names as soon as it knows the server id
(tests/nova_env.py: namespace ``amph-nv-<8 hex>``, veths ``amph-nv<6 hex>``, bridge
``amph-nvb<7 hex of the network>``), and they are swept like any prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from amphorae.drivers.network import ownership

LOG = logging.getLogger(__name__)
REGISTRY = Path(os.environ.get("AMPHORAE_TEST_REGISTRY") or "/run/amphorae-tests")
PREFIX = "amph-"
MIN_PREFIX = len(PREFIX) + 6  # a marker of 6 hex digits at least: never "amph-" alone
PG = "pg:"
DATABASE_PREFIX = "amphorae_test_"
RECORD = re.compile(r"[0-9]+-[0-9]+")  # <pid>-<start time>


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def _own_file() -> Path:
    return REGISTRY / f"{os.getpid()}-{_start_time(os.getpid())}"


def register(*entries: str | os.PathLike[str]) -> None:
    """Record what this process is about to make (see the module's docstring)."""
    if os.geteuid() != 0:
        return  # nothing on the host without root, and /run is not ours to write
    lines = []
    for entry in map(str, entries):
        if not _valid(entry):
            raise ValueError(f"{entry!r} is not a test run's resource")
        lines.append(entry + "\n")
    REGISTRY.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(_own_file(), "a") as fh:
        fh.write("".join(lines))


def _valid(entry: str) -> bool:
    """Only what tests make: ``amph-<marker>...`` names, directories named ``amph...``
    in the temporary directory, ``amphorae_test_...`` databases."""
    if entry.startswith(PG):
        return entry.startswith(PG + DATABASE_PREFIX) and '"' not in entry
    if entry.startswith("/"):
        path = Path(entry)
        return (path.is_absolute() and ".." not in path.parts
                and path.name.startswith(PREFIX[:4])
                and Path(tempfile.gettempdir()) in path.parents)
    return entry.startswith(PREFIX) and len(entry) >= MIN_PREFIX and "/" not in entry


def _alive(name: str) -> bool:
    pid, _, start = name.partition("-")
    return pid.isdigit() and _start_time(int(pid)) == start


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One sweeper at a time (workers of a run start together)."""
    REGISTRY.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(REGISTRY / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def sweep() -> list[str]:
    """Remove what processes that are gone registered; what was found (for the log)."""
    if os.geteuid() != 0:
        return []
    found: list[str] = []
    with _locked():
        for entry in sorted(REGISTRY.iterdir()):
            if not RECORD.fullmatch(entry.name) or _alive(entry.name):
                continue
            lines = [line for line in entry.read_text().splitlines() if _valid(line)]
            found += _remove(lines)
            entry.unlink()
    if found:
        LOG.warning("removed leftovers of earlier test runs: %s", ", ".join(found))
    return found


def remove(*entries: str | os.PathLike[str]) -> list[str]:
    """Remove now what ``entries`` name (as :func:`register` takes them): a test's own
    cleanup when what it ran cannot clean up after itself."""
    return _remove([str(e) for e in entries if _valid(str(e))])


def _remove(lines: list[str]) -> list[str]:
    dirs = [Path(line) for line in lines if line.startswith("/")]
    dbs = [line[len(PG):] for line in lines if line.startswith(PG)]
    prefixes = tuple(line for line in lines if not line.startswith(("/", PG)))
    found: list[str] = []
    _kill(_pids_using(dirs))
    namespaces = [ns for ns in _netns_names() if prefixes and ns.startswith(prefixes)]
    owners = set()
    for path in filter(Path.is_dir, dirs):
        namespaces += _amphora_namespaces(path)
        deployment = path / ownership.DEPLOYMENT_FILE
        if deployment.is_file():
            owners.add(deployment.read_text().strip())
    for ns in namespaces:
        _kill(_ns_pids(ns))
        _ip("netns", "delete", ns)
        found.append(ns)
    for link in _links():
        name = link.get("ifname", "")
        if (prefixes and name.startswith(prefixes)) \
                or ownership.owner(link.get("ifalias")) in owners:
            _ip("link", "delete", "dev", name)
            found.append(name)
    for db in dbs:
        if _drop_database(db):
            found.append(db)
    for path in filter(Path.exists, dirs):
        shutil.rmtree(path, ignore_errors=True)
        found.append(str(path))
    return found


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def _netns_names() -> list[str]:
    out = _ip("-json", "netns", "list").stdout
    return [n["name"] for n in json.loads(out)] if out.strip() else []


def _links() -> list[dict]:
    out = _ip("-json", "link", "show").stdout
    return list(json.loads(out)) if out.strip() else []


def _ns_pids(ns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", ns).stdout.split()]


def _amphora_namespaces(path: Path) -> list[str]:
    """Namespaces of the amphorae whose state lies under ``path`` (netns driver)."""
    names = []
    for state in path.rglob("amphora.json"):
        with contextlib.suppress(OSError, ValueError):
            names.append(json.loads(state.read_text())["namespace"])
    return names


def _pids_using(dirs: Iterable[Path]) -> list[int]:
    """Processes whose command line or working directory is under one of ``dirs``."""
    marks = [str(d) for d in dirs]
    if not marks:
        return []
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if any(m in cmd or cwd == m or cwd.startswith(m + "/") for m in marks):
                pids.append(int(pid))
    return [p for p in pids if p != os.getpid()]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()
                and _state(p) not in ("Z", "X")]
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def _drop_database(name: str) -> bool:
    import psycopg

    from tests.servers import PG_URL

    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone() is None:
                return False
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        LOG.warning("database %s of an earlier run not dropped: %s", name, exc)
        return False
    return True

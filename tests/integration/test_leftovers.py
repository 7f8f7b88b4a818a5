"""The next run removes what a killed test run left on the host (tests/leftovers.py;
root): its namespaces with the processes inside, its bridges (by prefix, and by the
deployment id of its state directory), its processes and state directory, while what a
live process registered stays. A registry of its own, so no real run's entries are read."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from amphorae.drivers.network import plumbing as plumbing_mod
from tests import leftovers, netns
from tests.dataplane import wait_for
from tests.integration.test_netns_compute import link_names, netns_names

# A test process that makes a deployment's worth of host resources, then is killed.
KILLED_RUN = textwrap.dedent("""
    import os, signal, subprocess, sys, tempfile
    from pathlib import Path
    from amphorae.drivers.network import ownership, plumbing
    from tests import leftovers

    marker = sys.argv[1]
    leftovers.register(f"amph-{marker}")
    state = Path(tempfile.mkdtemp(prefix=f"amph-{marker}-"))
    leftovers.register(state)
    pl = plumbing.Plumbing()
    pl.ensure_netns(f"amph-{marker}-m1")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 start_new_session=True)
    subprocess.Popen(["ip", "netns", "exec", f"amph-{marker}-m1", "sleep", "600"], **quiet)
    subprocess.Popen(["sleep", "600"], cwd=state, **quiet)  # found by its directory
    pl.ensure_bridge(f"amph-{marker}g")
    deployment = ownership.deployment_id(state)
    pl.ensure_bridge(plumbing.bridge_name(deployment, "public"), owner=deployment)
    print(state, plumbing.bridge_name(deployment, "public"), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_runs_leftovers_go_and_a_live_ones_stay(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    netns.require_root()
    monkeypatch.setattr(leftovers, "REGISTRY", tmp_path / "registry")
    dead, live = secrets.token_hex(3), secrets.token_hex(3)
    env = {**os.environ, "AMPHORAE_TEST_REGISTRY": str(tmp_path / "registry")}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, dead], env=env, cwd=Path.cwd(),
                          capture_output=True, text=True, timeout=60, check=False)
    plumbing = plumbing_mod.Plumbing()
    try:
        assert proc.returncode == -9, proc.stderr
        state, bridge = proc.stdout.split()
        # Its processes start on their own: wait until both run.
        wait_for(lambda: len(_pids_of(state) + _ns_pids(f"amph-{dead}-m1")) == 2,
                 "the killed run's processes running")
        sleepers = _pids_of(state) + _ns_pids(f"amph-{dead}-m1")
        assert {f"amph-{dead}g", bridge} <= link_names()

        leftovers.register(f"amph-{live}")  # this process, alive
        plumbing.ensure_netns(f"amph-{live}-m1")
        found = leftovers.sweep()
        assert not any(name.startswith(f"amph-{dead}") for name in netns_names())
        assert not {f"amph-{dead}g", bridge} & link_names()
        assert not Path(state).exists() and not _pids_of(state)
        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in sleepers)
        assert set(found) >= {f"amph-{dead}-m1", f"amph-{dead}g", bridge, state}
        assert f"amph-{live}-m1" in netns_names()  # a live process's: untouched
        assert leftovers.sweep() == []  # once: the dead process's record went with it
    finally:
        leftovers.sweep()  # whatever of the killed run a failure left
        plumbing.delete_netns(f"amph-{live}-m1")


def _pids_of(state: str) -> list[int]:
    return leftovers._pids_using([Path(state)])


def _ns_pids(ns: str) -> list[int]:
    return [int(p) for p in netns.run("ip", "netns", "pids", ns).stdout.split()]


def _zombie(pid: int) -> bool:
    return leftovers._state(pid) == "Z"

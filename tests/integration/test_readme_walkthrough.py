"""README.md's "Your first load balancer", run as written (root).

The blocks come out of README.md itself (each ```sh block after a ``<!-- walkthrough -->``
comment), so the walkthrough cannot drift from what works: the ``service`` block runs
as the first terminal (``scripts/dev up``), the others one after another in a single
bash, as typed into the second terminal. The only change made to them: the state path
``/var/lib/amphorae`` becomes a directory of this test's (``$AMPHORAE_STATE_PATH``
tells the service the same). The embedded default's fixed addresses (API on port 9876,
``public`` 198.18.0.0/20, management 198.19.0.0/24) and the backends' ports 8001/8002
must be free on this host: the test says so rather than collide with a running service.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import ownership, plumbing
from tests import dataplane as dp
from tests import leftovers, netns

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- walkthrough(?:: (?P<role>\w+))? -->\n```sh\n(?P<body>.*?)```", re.S)
DEFAULT_STATE = "/var/lib/amphorae"
API = "http://127.0.0.1:9876"
FIXED_PORTS = (9876, 8001, 8002)
FIXED_SUBNETS = ("198.18.0.0/20", "198.19.0.0/24")
DEMO_DIR = Path("/tmp/amph-demo")  # the README's backends serve from here


def walkthrough(text: str) -> tuple[str, list[str]]:
    """The service block and the second terminal's blocks, in README order."""
    service, steps = [], []
    for match in BLOCK.finditer(text):
        (service if match["role"] == "service" else steps).append(match["body"])
    assert len(service) == 1, "README needs exactly one <!-- walkthrough: service --> block"
    assert steps, "README has no <!-- walkthrough --> blocks"
    return service[0], steps


def test_the_blocks_are_found() -> None:
    service, steps = walkthrough(README.read_text())
    assert service.strip() == "scripts/dev up"
    assert any("loadbalancer create" in step for step in steps)


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_alive(proc: subprocess.Popen[bytes]) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 0)
        return True
    return False


def kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and group_alive(proc):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def state() -> Iterator[Path]:
    netns.require_root()
    busy = [str(p) for p in FIXED_PORTS if port_in_use(p)] + dp.subnets_in_use(FIXED_SUBNETS)
    if busy:
        pytest.fail(f"the walkthrough's fixed addresses are taken on this host: {busy} "
                    "(is an `amphorae up` on the embedded default running?)")
    path = Path(tempfile.mkdtemp(prefix=f"amph-{secrets.token_hex(3)}-"))
    leftovers.register(path)
    yield path
    leftovers.remove(path)  # after a failure: amphorae, bridges (by deployment id), files
    shutil.rmtree(DEMO_DIR, ignore_errors=True)


def test_readme_walkthrough(state: Path) -> None:
    service_block, steps = walkthrough(README.read_text().replace(DEFAULT_STATE, str(state)))
    env = {**os.environ, "AMPHORAE_STATE_PATH": str(state)}
    service_log = state / "service.log"
    service = terminal2 = None
    try:
        with open(service_log, "wb") as out:
            service = subprocess.Popen(["bash", "-c", service_block], cwd=ROOT, env=env,
                                       stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)

        def api_up() -> bool:
            assert service.poll() is None, service_log.read_text()[-3000:]
            with contextlib.suppress(requests.RequestException):  # not yet, or slow to start
                return requests.get(API + "/", timeout=2).ok
            return False

        dp.wait_for(api_up, "the service of step 1 answering", timeout=120)
        script = "set -euo pipefail\n" + "\n".join(steps)
        terminal2 = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        output = terminal2.communicate(timeout=300)[0].decode()
        assert terminal2.returncode == 0, output[-4000:]
        # Step 4 reached both backends, steps 6 and 7 the HA pair over TLS.
        assert output.count("hello from web1") == 3, output
        assert output.count("hello from web2") == 1, output
        assert "MASTER" in output and "BACKUP" in output, output
        # Step 8 showed the service, the failover's event and a metric.
        assert "answering on http://127.0.0.1:9876" in output, output
        assert '"kind": "FAILOVER"' in output, output
        assert 'amphorae_load_balancers{operating_status="ONLINE"' in output, output
        # Step 9: Ctrl-C. With every load balancer deleted it removes what it made.
        deployment = (state / "deployment-id").read_text().strip()
        os.killpg(service.pid, signal.SIGINT)
        assert service.wait(30) == 0, service_log.read_text()[-3000:]
        log = service_log.read_text()
        assert not re.search(r" (ERROR|CRITICAL) |Traceback", log), log[-3000:]
        left = [link["ifname"] for link in plumbing.Plumbing().links()
                if ownership.owner(link.get("ifalias")) == deployment]
        assert not left, f"left behind: {left}"
        # Other tests' namespaces (CI runs two at once) are listed without an id: only
        # the ones whose state file names this deployment are ours.
        amphorae = [a for a in compute.NetnsComputeDriver(
            state_dir=str(state / "amphorae"), deployment=deployment).list_amphorae()
            if a.amphora_id]
        assert not amphorae, f"amphorae left behind: {amphorae}"
    finally:
        kill_group(terminal2)
        kill_group(service)
        print(service_log.read_text()[-6000:])  # shown when the test fails

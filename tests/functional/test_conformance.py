"""A representative share of Octavia's own API conformance suite (octavia-tempest-plugin)
on every run: load balancers, listeners, pools, members, monitors, providers, each test
with its RBAC checks, in both of Octavia's role models. `scripts/conformance` starts a
real Keystone and `amphorae up` with the no-op drivers; run it alone for all 632 tests."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("SHARED", ROOT.parent / "shared"))
V2 = r"^octavia_tempest_plugin\.tests\.api\.v2\."

# Each class's setUpClass builds a load balancer; these pick a few tests from each.
SHARE = V2 + "(" + "|".join([
    r"test_load_balancer\.",
    r"test_provider\.",
    r"test_(flavor|availability_zone)_capabilities\.",
    r"test_amphora\.AmphoraAPITest\.test_amphora_list_and_show",
    r"test_listener\.ListenerAPITest\.test_(http|udp|sctp)_listener_(create|list|update)\[",
    r"test_pool\.PoolAPITest\.test_(HTTP|UDP)_(RR|SIP)_pool_(standalone_create|update)\[",
    r"test_member\.MemberAPITest1\.test_(ipv6_)?(HTTP|UDP)_LC_member_(create|list)\[",
    r"test_member\.MemberAPITest2\.test_HTTP_RR_member_batch_update\[",
    r"test_healthmonitor\.HealthMonitorAPITest\.test_RR_HTTP_healthmonitor_(create|list)\[",
]) + ")"
# The advanced model denies plain Keystone roles what the default admits.
RBAC_SHARE = V2 + r"(test_load_balancer\.LoadBalancerAPITest\.test_load_balancer_(list|show)\[" \
                  r"|test_provider\.|test_flavor\.FlavorAPITest\.test_flavor_list)"


@pytest.mark.parametrize(("model", "regex"), [("keystone_default_roles", SHARE),
                                              ("advanced", RBAC_SHARE)])
def test_octavia_conformance_share(model: str, regex: str, tmp_path: pathlib.Path) -> None:
    assert (SHARED / "tools" / "octavia-tempest" / "run.sh").exists(), \
        f"Octavia's suite runner is not in {SHARED} (set SHARED)"
    env = {**os.environ, "SHARED": str(SHARED), "LB_RBAC_TEST_TYPE": model,
           "CONFORMANCE_DIR": str(tmp_path), "TEMPEST_REGEX": regex}
    run = subprocess.run([str(ROOT / "scripts" / "conformance")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    summary = "\n".join(line for line in run.stdout.splitlines()
                        if "FAILED" in line or line.startswith((" - ", "conformance:")))
    assert run.returncode == 0, f"{summary}\n{run.stderr[-3000:]}\n{run.stdout[-6000:]}"
    assert " - Failed: 0" in run.stdout and " - Passed: " in run.stdout, summary

"""Real OpenStack services for the cloud-mode tests: Keystone, Neutron, Barbican and Nova
(fake virt, with Placement and Glance), started by scripts/openstack-dev from
../shared/tools/openstack-dev on their fixed loopback ports.

Starting is idempotent and serialised (a lock in the state directory), so both xdist
workers may ask. Whatever a test run started, the run stops at its end (conftest's
pytest_sessionfinish); services someone started by hand, or another test run running at
the same time, are left running (the marker names the run that started them). The venvs and
the data are kept in ~/.cache/amphorae/openstack-dev, so the first start installs for
about 5 minutes, later ones take about 40 s (and a few seconds when they run already).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
from typing import Any

import openstack
import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "openstack-dev"
SERVICES = ("neutron", "barbican", "nova")
AUTH_URL = "http://127.0.0.1:15000/v3"
REGION = "RegionOne"
PASSWORD = "password"  # keystone-dev's seeded users
ADMIN_PASSWORD = "admin"
SERVICE_USER = ("octavia", "service")  # admin + service roles in project `service`
RUN_ID_VARIABLE = "AMPHORAE_TEST_RUN"


def _state_dir() -> pathlib.Path:
    out = subprocess.run([str(SCRIPT), "env"], check=True, capture_output=True, text=True)
    values = dict(line.split("=", 1) for line in out.stdout.splitlines())
    return pathlib.Path(values["OSDEV_STATE_DIR"])


def _keystone_answers() -> bool:
    try:
        return requests.get(AUTH_URL, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def started_marker() -> pathlib.Path:
    """Present while services run that a test run started (and so must stop); it holds
    that run's id."""
    return _state_dir() / "started-by-tests"


def run_id() -> str:
    """This test run's id: conftest sets it on the xdist controller, whose workers
    inherit it; a run without it owns nothing it did not start itself."""
    return os.environ.get(RUN_ID_VARIABLE) or f"pid-{os.getpid()}"


def ensure_running(services: tuple[str, ...] = SERVICES) -> Cloud:
    """Start ``services`` (and Keystone) unless they run; a failure shows the tool's
    output."""
    if not _keystone_answers():
        marker = started_marker()
        marker.parent.mkdir(parents=True, exist_ok=True)  # nothing installed yet
        marker.write_text(run_id())
    done = subprocess.run([str(SCRIPT), "start", *services], capture_output=True, text=True,
                          timeout=1200)
    if done.returncode:
        raise RuntimeError(f"scripts/openstack-dev start {' '.join(services)} failed:\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return Cloud(AUTH_URL)


def stop_if_started() -> None:
    """Stop the services if this test run started them."""
    marker = started_marker()
    if marker.exists() and marker.read_text() == run_id():
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=300)
        marker.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Cloud:
    auth_url: str

    def auth(self, user: str, project: str | None,
             password: str = PASSWORD) -> dict[str, Any]:
        """openstacksdk's password `auth` for a seeded user."""
        args = {"auth_url": self.auth_url, "username": user, "password": password,
                "user_domain_name": "Default"}
        if project:
            args |= {"project_name": project, "project_domain_name": "Default"}
        return args

    def connect(self, user: str = "project-a-member", project: str | None = "project-a",
                password: str = PASSWORD) -> openstack.connection.Connection:
        return openstack.connection.Connection(
            auth=self.auth(user, project, password), region_name=REGION,
            identity_api_version="3", interface="public")

    def service_login(self) -> str:
        """keystoneauth's password options for the service user, as lines of a config
        section ([service_auth], or [keystone_authtoken] for the API's token checks)."""
        user, project = SERVICE_USER
        return (f"auth_type = password\nauth_url = {self.auth_url}\nusername = {user}\n"
                f"password = {PASSWORD}\nproject_name = {project}\n"
                "user_domain_name = Default\nproject_domain_name = Default\n")

    def admin(self) -> openstack.connection.Connection:
        return self.connect("admin", "admin", ADMIN_PASSWORD)

    def service(self) -> openstack.connection.Connection:
        """The control plane's own user (what `[service_auth]` logs in as)."""
        return self.connect(*SERVICE_USER)

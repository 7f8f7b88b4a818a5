"""Keystone authentication and Octavia's RBAC with real tokens from a real Keystone.

The API runs with ``auth_strategy = keystone`` (keystonemiddleware's auth_token) against
the Keystone of tests/keystone.py, whose catalog names the API as the `load-balancer`
endpoint. Every persona logs in with its password; openstacksdk and the `openstack`
command find the API through the service catalog. Each project holds a whole tree (load
balancer, listener, pool, member, health monitor, L7 policy and rule); nothing settles it
but tests/settle.py (no worker runs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests

from tests import keystone as ks
from tests import servers

ALL, OWN, NONE = "all", "own", "none"
A, B = ks.PROJECT_A, ks.PROJECT_B

# Whose load balancers (and children) each persona reads and changes, by Octavia's
# default rules: Keystone's admin/member/reader, project- and system-scoped, and the
# load-balancer_* roles.
ACCESS = {
    "project-a-admin": (ALL, ALL),
    "project-a-member": (OWN, OWN),
    "project-a-reader": (OWN, NONE),
    "project-a-other": (NONE, NONE),
    "project-b-member": (OWN, OWN),
    "project-b-reader": (OWN, NONE),
    "lb-admin": (ALL, ALL),
    "lb-quota-admin": (NONE, NONE),
    "lb-global-observer": (ALL, NONE),
    "lb-member": (OWN, OWN),
    "lb-observer": (OWN, NONE),
    "lb-member-b": (OWN, OWN),
    "system-admin": (ALL, ALL),
    "system-reader": (ALL, NONE),
}
# Quotas: read as load balancers are, changed by administrators only, and
# load-balancer_quota_admin administers them too.
QUOTA_ACCESS = {**{p: (reads, writes if writes == ALL else NONE)
                   for p, (reads, writes) in ACCESS.items()},
                "lb-quota-admin": (ALL, ALL)}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "keystone_server" in metafunc.fixturenames:
        backends = metafunc.config.getoption("--backends").split(",")
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(scope="session")
def keystone_server(backend: str, keystone: ks.Keystone,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """The API on ``backend`` checking tokens with auth_token, in the catalog."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api(backend, tmp_path_factory.mktemp(f"api-ks-{backend}"),
                             f"ks{worker}", keystone.authtoken_config()) as srv:
        keystone.set_endpoint(srv.url)
        yield srv


class Clouds:
    """One openstacksdk connection per persona: password login, API from the catalog."""

    def __init__(self, keystone: ks.Keystone) -> None:
        self.keystone = keystone
        self.conns: dict[str, openstack.connection.Connection] = {}

    def conn(self, persona: str) -> openstack.connection.Connection:
        if persona not in self.conns:
            self.conns[persona] = openstack.connection.Connection(
                auth_type="password", auth=self.keystone.auth_args(persona),
                region_name=ks.REGION, interface="public")
        return self.conns[persona]

    def call(self, persona: str, method: str, path: str,
             body: Any = None) -> tuple[int, Any]:
        """A request through the persona's load-balancer proxy; (status, JSON body)."""
        resp = self.conn(persona).load_balancer.request(path, method, json=body)
        return resp.status_code, (resp.json() if resp.content else None)

    def status(self, persona: str, method: str, path: str, body: Any = None) -> int:
        return self.call(persona, method, path, body)[0]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@pytest.fixture(scope="session")
def clouds(keystone_server: servers.Server, keystone: ks.Keystone) -> Iterator[Clouds]:
    # Per server: a connection remembers the endpoint it discovered.
    clouds = Clouds(keystone)
    yield clouds
    clouds.close()


@dataclasses.dataclass
class Tree:
    """One project's load balancer and its children, by id."""

    project_id: str
    lb: str
    listener: str
    pool: str
    member: str
    healthmonitor: str
    l7policy: str
    l7rule: str

    def reads(self) -> list[str]:
        pool, policy = f"/lbaas/pools/{self.pool}", f"/lbaas/l7policies/{self.l7policy}"
        lb, listener = f"/lbaas/loadbalancers/{self.lb}", f"/lbaas/listeners/{self.listener}"
        return [lb, f"{lb}/status", f"{lb}/stats", listener, f"{listener}/stats", pool,
                f"{pool}/members", f"{pool}/members/{self.member}",
                f"/lbaas/healthmonitors/{self.healthmonitor}", policy, f"{policy}/rules",
                f"{policy}/rules/{self.l7rule}"]

    def writes(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(path, PUT body) of each object; DELETE goes to the same paths."""
        policy = f"/lbaas/l7policies/{self.l7policy}"
        return [
            (f"/lbaas/listeners/{self.listener}", {"listener": {"name": name}}),
            (f"/lbaas/pools/{self.pool}/members/{self.member}", {"member": {"name": name}}),
            (f"/lbaas/healthmonitors/{self.healthmonitor}", {"healthmonitor": {"name": name}}),
            (f"{policy}/rules/{self.l7rule}", {"rule": {"value": f"/{name}"}}),
            (policy, {"l7policy": {"name": name}}),
            (f"/lbaas/pools/{self.pool}", {"pool": {"name": name}}),
            (f"/lbaas/loadbalancers/{self.lb}", {"loadbalancer": {"name": name}}),
        ]


def graph(name: str) -> dict[str, Any]:
    """A load balancer with one of every child, created in one call."""
    pool = {"name": f"{name}-pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": "198.18.64.10", "protocol_port": 80,
                         "subnet_id": servers.MEMBER_SUBNET}],
            "healthmonitor": {"type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3}}
    rule = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x"}
    listener = {"name": f"{name}-listener", "protocol": "HTTP", "protocol_port": 80,
                "default_pool": pool,
                "l7policies": [{"action": "REJECT", "rules": [rule]}]}
    return {"loadbalancer": {"name": name, "vip_subnet_id": servers.PUBLIC_SUBNET,
                             "listeners": [listener]}}


@pytest.fixture(scope="session")
def world(clouds: Clouds, keystone: ks.Keystone,
          keystone_server: servers.Server) -> dict[str, Tree]:
    """A tree in each project, created by its own load-balancer_member, with quotas."""
    trees = {}
    for project, owner in ((A, "lb-member"), (B, "lb-member-b")):
        status, out = clouds.call(owner, "POST", "/lbaas/loadbalancers", graph(f"rbac-{project}"))
        assert status == 201, out
        lb = out["loadbalancer"]
        listener, pool = lb["listeners"][0], lb["pools"][0]
        policy = listener["l7policies"][0]
        trees[project] = Tree(lb["project_id"], lb["id"], listener["id"], pool["id"],
                              pool["members"][0]["id"], pool["healthmonitor"]["id"],
                              policy["id"], policy["rules"][0]["id"])
        assert lb["project_id"] == keystone.projects[project]
        servers.settle_db(keystone_server.db_url, lb["id"])
        quota = {"quota": {"member": 1000}}
        assert clouds.status("lb-admin", "PUT", f"/lbaas/quotas/{lb['project_id']}", quota) \
            == 202
    return trees


def covers(access: str, home: str | None, target: str) -> bool:
    return access == ALL or (access == OWN and home == target)


def settle(server: servers.Server, tree: Tree) -> None:
    servers.settle_db(server.db_url, tree.lb)


def projects_listed(clouds: Clouds, persona: str, path: str,
                    **params: str) -> tuple[int, set[str]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = clouds.call(persona, "GET", f"{path}?{query}" if query else path)
    if status != 200:
        return status, set()
    key = next(k for k in body if not k.endswith("_links"))
    return status, {row["project_id"] for row in body[key]}


# --- every persona: reads, changes, lists, creates, quotas ----------------------------


@pytest.mark.parametrize("persona", sorted(ACCESS))
def test_objects_each_role_reads_and_changes(persona, clouds, world, keystone_server):
    """Denied reads and changes are 403, another project's objects too (Octavia loads
    the object, then checks the policy against its project)."""
    reads, writes = ACCESS[persona]
    home = ks.PERSONAS[persona].project
    for target, tree in world.items():
        may_read, may_write = covers(reads, home, target), covers(writes, home, target)
        for path in tree.reads():
            assert clouds.status(persona, "GET", path) == (200 if may_read else 403), path
        for path, body in tree.writes(f"by-{persona}"):
            assert clouds.status(persona, "PUT", path, body) == (200 if may_write
                                                                 else 403), path
            if may_write:
                settle(keystone_server, tree)
            else:  # allowed deletes: test_creates_and_project_id_in_the_body
                assert clouds.status(persona, "DELETE", path) == 403, path
        _, lb = clouds.call("lb-admin", "GET", f"/lbaas/loadbalancers/{tree.lb}")
        assert (lb["loadbalancer"]["name"] == f"by-{persona}") == may_write
        assert lb["loadbalancer"]["provisioning_status"] == "ACTIVE"


@pytest.mark.parametrize("persona", sorted(ACCESS))
def test_lists_show_the_projects_a_role_reads(persona, clouds, world, keystone):
    reads, _ = ACCESS[persona]
    home = ks.PERSONAS[persona].project
    project_a, project_b = world[A].project_id, world[B].project_id
    for path in ("/lbaas/loadbalancers", "/lbaas/listeners", "/lbaas/pools",
                 "/lbaas/healthmonitors", "/lbaas/l7policies"):
        status, seen = projects_listed(clouds, persona, path)
        if reads == NONE:
            assert status == 403, path
        elif reads == ALL:
            assert status == 200 and {project_a, project_b} <= seen, path
            assert projects_listed(clouds, persona, path, project_id=project_b) == \
                (200, {project_b})
        else:
            assert (status, seen) == (200, {keystone.projects[home]}), path
            other = project_b if home == A else project_a
            assert projects_listed(clouds, persona, path, project_id=other)[0] == 403


def created_and_deleted(clouds: Clouds, persona: str, server: servers.Server,
                        lb_id: str) -> None:
    """The creator deletes what it created, once it is ACTIVE."""
    servers.settle_db(server.db_url, lb_id)
    assert clouds.status(persona, "DELETE", f"/lbaas/loadbalancers/{lb_id}") == 204
    servers.settle_db(server.db_url, lb_id)
    assert clouds.status(persona, "GET", f"/lbaas/loadbalancers/{lb_id}") == 404


@pytest.mark.parametrize("persona", sorted(ACCESS))
def test_creates_and_project_id_in_the_body(persona, clouds, keystone, keystone_server):
    """A writer creates (and deletes) in its own project; project_id of another project
    in the body is honoured only for administrators; a system-scoped token must name the
    project."""
    _, writes = ACCESS[persona]
    home = ks.PERSONAS[persona].project
    body = {"loadbalancer": {"vip_subnet_id": servers.PUBLIC_SUBNET, "name": persona}}
    status, out = clouds.call(persona, "POST", "/lbaas/loadbalancers", body)
    if home is None:
        assert status == 400 and "Missing project ID" in out["faultstring"]
    else:
        assert status == (201 if writes != NONE else 403), out
    if status == 201:
        assert out["loadbalancer"]["project_id"] == keystone.projects[home]
        created_and_deleted(clouds, persona, keystone_server, out["loadbalancer"]["id"])
    other = keystone.projects[B if home == A else A]
    body["loadbalancer"]["project_id"] = other
    status, out = clouds.call(persona, "POST", "/lbaas/loadbalancers", body)
    assert status == (201 if writes == ALL else 403), out
    if status == 201:
        assert out["loadbalancer"]["project_id"] == other
        created_and_deleted(clouds, persona, keystone_server, out["loadbalancer"]["id"])
    # Amphorae are the operator's: administrators only.
    assert clouds.status(persona, "GET", "/octavia/amphorae") == (200 if writes == ALL
                                                                  else 403)


@pytest.mark.parametrize("persona", sorted(QUOTA_ACCESS))
def test_quotas_each_role_reads_and_changes(persona, clouds, world):
    reads, writes = QUOTA_ACCESS[persona]
    home = ks.PERSONAS[persona].project
    for target, tree in world.items():
        path = f"/lbaas/quotas/{tree.project_id}"
        status, body = clouds.call(persona, "GET", path)
        assert status == (200 if covers(reads, home, target) else 403)
        if status == 200:
            assert body["quota"]["member"] == 1000
        change = {"quota": {"member": 1000}}
        expected = 202 if covers(writes, home, target) else 403
        assert clouds.status(persona, "PUT", path, change) == expected
        assert clouds.status(persona, "DELETE", path) == expected
        if expected == 202:  # put it back for the other tests
            assert clouds.status(persona, "PUT", path, change) == 202
    status, seen = projects_listed(clouds, persona, "/lbaas/quotas")
    if reads == NONE:
        assert status == 403
    elif reads == ALL:
        assert {world[A].project_id, world[B].project_id} <= seen
    else:
        assert seen == {world[home].project_id}


def test_quotas_count_per_project(clouds, world, keystone_server):
    """Project B at its load balancer limit does not stop project A."""
    project_b = world[B].project_id
    status, body = clouds.call("lb-admin", "GET", f"/lbaas/loadbalancers?project_id={project_b}")
    assert status == 200
    in_use = len(body["loadbalancers"])
    limit = {"quota": {"load_balancer": in_use}}
    assert clouds.status("lb-admin", "PUT", f"/lbaas/quotas/{project_b}", limit) == 202
    try:
        body = {"loadbalancer": {"vip_subnet_id": servers.PUBLIC_SUBNET, "name": "quota"}}
        status, out = clouds.call("lb-member-b", "POST", "/lbaas/loadbalancers", body)
        assert status == 403
        assert out["faultstring"] == "Quota has been met for resources: Load Balancer"
        status, out = clouds.call("lb-member", "POST", "/lbaas/loadbalancers", body)
        assert status == 201, out
        servers.settle_db(keystone_server.db_url, out["loadbalancer"]["id"])
    finally:
        unlimited = {"quota": {"load_balancer": -1}}
        assert clouds.status("lb-admin", "PUT", f"/lbaas/quotas/{project_b}", unlimited) == 202


# --- tokens ---------------------------------------------------------------------------


def _get(server: servers.Server, token: str | None, **headers: str) -> requests.Response:
    if token is not None:
        headers["X-Auth-Token"] = token
    # A new connection each time: either gunicorn worker (each with its token cache).
    return requests.get(server.url + "/v2/lbaas/loadbalancers", headers=headers, timeout=30)


def test_missing_and_garbage_tokens_are_401(keystone_server, keystone):
    for token in (None, "gAAAAABgarbage-not-a-token", keystone.token("lb-member") + "x"):
        resp = _get(keystone_server, token)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
    # Version discovery needs no token, as in Octavia.
    versions = requests.get(keystone_server.url + "/", timeout=30)
    assert versions.status_code == 200 and versions.json()["versions"]


def test_expired_token_is_401(keystone_server, keystone):
    """A real token that expires 4 s after issue: accepted, then refused, also where
    auth_token had cached it."""
    token, expires = keystone.expiring_token("lb-member", 4)
    for _ in range(4):
        assert _get(keystone_server, token).status_code == 200
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1)
    for _ in range(4):
        assert _get(keystone_server, token).status_code == 401


def test_a_token_is_validated_once_per_api_worker(keystone_server, keystone):
    """keystonemiddleware caches a validated token: 30 requests on new connections (any
    of the 2 gunicorn workers) cost Keystone at most one validation per worker."""
    token = keystone.token("lb-member")
    before = keystone.validations()
    for _ in range(30):
        assert _get(keystone_server, token).status_code == 200
    deadline = time.monotonic() + 5  # the access log line follows the response
    while keystone.validations() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 1 <= keystone.validations() - before <= 2


def test_identity_headers_from_the_client_are_ignored(keystone_server, keystone, world):
    """Only auth_token sets identity: a member sending admin's headers stays a member."""
    forged = {"X-Project-Id": world[B].project_id, "X-Tenant-Id": world[B].project_id,
              "X-Roles": "admin", "OpenStack-System-Scope": "all",
              "X-Identity-Status": "Confirmed", "X-Domain-Id": "default"}
    token = keystone.token("lb-member")
    resp = _get(keystone_server, token, **forged)
    assert resp.status_code == 200
    assert {lb["project_id"] for lb in resp.json()["loadbalancers"]} == {world[A].project_id}
    other = requests.get(f"{keystone_server.url}/v2/lbaas/loadbalancers/{world[B].lb}",
                         headers={"X-Auth-Token": token, **forged}, timeout=30)
    assert other.status_code == 403
    assert _get(keystone_server, None, **forged).status_code == 401


# --- openstacksdk and the openstack command -------------------------------------------


def test_openstacksdk_resources(clouds, world):
    """The SDK's own calls: what they return and the errors they raise per role."""
    lb_a, lb_b = world[A].lb, world[B].lb
    member = clouds.conn("lb-member").load_balancer
    assert {lb.id for lb in member.load_balancers()} >= {lb_a}
    assert lb_b not in {lb.id for lb in member.load_balancers()}
    assert member.get_load_balancer(lb_a).listeners == [{"id": world[A].listener}]
    with pytest.raises(openstack.exceptions.ForbiddenException):
        member.get_load_balancer(lb_b)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        member.update_load_balancer(lb_b, description="mine now")
    with pytest.raises(openstack.exceptions.ForbiddenException):
        member.get_load_balancer_statistics(lb_b)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        member.get_quota(world[B].project_id)
    observer = clouds.conn("lb-global-observer").load_balancer
    assert {lb_a, lb_b} <= {lb.id for lb in observer.load_balancers()}
    assert observer.get_load_balancer(lb_b).project_id == world[B].project_id
    with pytest.raises(openstack.exceptions.ForbiddenException):
        observer.update_load_balancer(lb_b, description="observed")
    with pytest.raises(openstack.exceptions.ForbiddenException):
        observer.delete_load_balancer(lb_b)
    admin = clouds.conn("system-admin").load_balancer
    assert {lb_a, lb_b} <= {lb.id for lb in admin.load_balancers()}
    assert admin.get_quota(world[B].project_id).members == 1000


def openstack_cli(keystone: ks.Keystone, persona: str, *args: str,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
    """`openstack <args>` logged in as ``persona`` through OS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(keystone.cli_env(persona))
    proc = subprocess.run([str(servers.VENV_BIN / "openstack"), *args], env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_openstack_cli_with_password_auth(keystone, world):
    import json

    lb_b = world[B].lb
    listed = json.loads(openstack_cli(keystone, "lb-member", "loadbalancer", "list", "-f",
                                      "json").stdout)
    assert world[A].lb in {lb["id"] for lb in listed}
    assert {lb["project_id"] for lb in listed} == {world[A].project_id}
    shown = openstack_cli(keystone, "lb-member", "loadbalancer", "show", lb_b, check=False)
    assert shown.returncode != 0 and "HTTP 403" in shown.stderr and '"id"' not in shown.stdout
    listed = json.loads(openstack_cli(keystone, "system-reader", "loadbalancer", "list",
                                      "-f", "json").stdout)
    assert {world[A].lb, lb_b} <= {lb["id"] for lb in listed}
    refused = openstack_cli(keystone, "lb-global-observer", "loadbalancer", "set",
                            "--description", "observed", lb_b, check=False)
    assert refused.returncode != 0
    assert "Policy does not allow this request to be performed" in refused.stderr


# --- an operator's policy.yaml ---------------------------------------------------------


def test_operator_policy_file_overrides_the_defaults(keystone, tmp_path):
    """policy.yaml next to the configuration file: here the operator keeps only the
    load-balancer_* roles for changes, so Keystone's member may no longer create."""
    (tmp_path / "policy.yaml").write_text(
        '"load-balancer:member_and_owner": '
        '"role:load-balancer_member and rule:load-balancer:owner"\n')
    body = {"loadbalancer": {"vip_subnet_id": servers.PUBLIC_SUBNET}}
    with servers.running_api("sqlite", tmp_path, "kspolicy",
                             keystone.authtoken_config()) as srv:
        def post(persona: str) -> int:
            return requests.post(srv.url + "/v2/lbaas/loadbalancers", json=body, timeout=30,
                                 headers={"X-Auth-Token": keystone.token(persona)}).status_code

        assert post("project-a-member") == 403
        assert post("lb-member") == 201
        assert post("project-a-admin") == 201


# --- /metrics ---------------------------------------------------------------------------


def test_metrics_need_no_token_unless_the_operator_asks(keystone_server, keystone, tmp_path):
    """``[metrics] auth_required``: off, /metrics is public like version discovery; on,
    it takes a token allowed to list amphorae (admins)."""
    public = requests.get(keystone_server.url + "/metrics", timeout=30)
    assert public.status_code == 200 and "amphorae_api_requests_total" in public.text
    with servers.running_api("sqlite", tmp_path, "ksmetrics", keystone.authtoken_config()
                             + "\n[metrics]\nauth_required = true\n") as srv:
        def get(persona: str | None) -> int:
            headers = {"X-Auth-Token": keystone.token(persona)} if persona else {}
            return requests.get(srv.url + "/metrics", headers=headers, timeout=30).status_code

        assert get(None) == 401
        assert get("project-a-member") == 403
        assert get("project-a-admin") == 200

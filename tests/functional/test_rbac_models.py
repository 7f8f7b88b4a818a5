"""Octavia's other RBAC models with real tokens: the API runs with etc/policy/advanced.yaml
or etc/policy/owner_or_admin.yaml as its `[oslo_policy] policy_file` and checks the
tokens of the Keystone of tests/keystone.py. Project A and project B each hold a load
balancer; every persona tries the same calls and the test compares what each may do
with the model's table.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import keystone as ks
from tests import servers

POLICY_DIR = pathlib.Path(__file__).resolve().parents[2] / "etc" / "policy"
PROJECTS = {"A": ks.PROJECT_A, "B": ks.PROJECT_B}
OK, REFUSED = "ok", "refused"

# persona: (projects whose load balancer it reads, those it changes, what it may do with
# project A's quota ("r", "rw" or ""), whether it administers the service).
# advanced: only the load-balancer_* roles and admin count; Keystone's member and reader
# alone may not even list providers.
ADVANCED = {
    "project-a-member": ("", "", "", False),
    "project-a-reader": ("", "", "", False),
    "system-reader": ("", "", "", False),
    "lb-quota-admin": ("", "", "rw", False),
    "lb-observer": ("A", "", "r", False),
    "lb-global-observer": ("AB", "", "r", False),
    "lb-member": ("A", "A", "r", False),
    "lb-member-b": ("B", "B", "", False),
    "lb-admin": ("AB", "AB", "rw", True),
    "project-a-admin": ("AB", "AB", "rw", True),
    "system-admin": ("AB", "AB", "rw", True),
}
# owner_or_admin: any role on a project owns its load balancers; only admin and
# load-balancer_admin reach another project's, or change quotas.
OWNER_OR_ADMIN = {
    "project-a-reader": ("A", "A", "r", False),
    "project-a-other": ("A", "A", "r", False),
    "lb-observer": ("A", "A", "r", False),
    "lb-global-observer": ("A", "A", "r", False),
    "lb-quota-admin": ("A", "A", "r", False),
    "project-b-member": ("B", "B", "", False),
    "lb-admin": ("AB", "AB", "rw", True),
    "project-a-admin": ("AB", "AB", "rw", True),
    "system-admin": ("AB", "AB", "rw", True),
}


def expected_row(persona: str, reads: str, writes: str, quota: str,
                 admin: bool) -> dict[str, Any]:
    home = ks.PERSONAS[persona].project
    own = next((name for name, project in PROJECTS.items() if project == home), None)
    # A system-scoped token names no project to create in: a 400 before any policy.
    create = 400 if home is None else OK if own in writes else REFUSED
    lists = OK if reads else REFUSED
    return {"providers": lists, "flavors": lists, "availability zones": lists,
            "load balancers listed": sorted(reads) or REFUSED,
            **{f"read {p}": OK if p in reads else REFUSED for p in PROJECTS},
            **{f"change {p}": OK if p in writes else REFUSED for p in PROJECTS},
            "create": create,
            "read quota A": OK if "r" in quota else REFUSED,
            "change quota A": OK if "w" in quota else REFUSED,
            "amphorae": OK if admin else REFUSED}


def outcome(resp: requests.Response, hidden: bool = False) -> str | int:
    """OK, REFUSED or the unexpected status. ``hidden``: an object the caller may not
    reach answers 404 where Octavia hides it (another project's), which refuses too."""
    if resp.ok:
        return OK
    if resp.status_code == 403 or (hidden and resp.status_code == 404):
        return REFUSED
    return resp.status_code


class ModelAPI:
    """The API under one policy file, a load balancer in each project, and per persona
    one token."""

    def __init__(self, server: servers.Server, keystone: ks.Keystone) -> None:
        self.server = server
        self.keystone = keystone
        self.tokens: dict[str, str] = {}
        self.lbs = {name: self._seed_lb(project) for name, project in PROJECTS.items()}

    def call(self, persona: str, method: str, path: str,
             body: Any = None) -> requests.Response:
        if persona not in self.tokens:
            self.tokens[persona] = self.keystone.token(persona)
        return requests.request(method, f"{self.server.url}/v2{path}", json=body, timeout=30,
                                headers={"X-Auth-Token": self.tokens[persona]})

    def _create_lb(self, persona: str, **fields: Any) -> requests.Response:
        body = {"vip_subnet_id": servers.PUBLIC_SUBNET, "name": f"rbac-model-{persona}",
                **fields}
        resp = self.call(persona, "POST", "/lbaas/loadbalancers", {"loadbalancer": body})
        if resp.status_code == 201:
            servers.settle_db(self.server.db_url, resp.json()["loadbalancer"]["id"])
        return resp

    def _seed_lb(self, project: str) -> str:
        resp = self._create_lb("lb-admin", project_id=self.keystone.projects[project])
        assert resp.status_code == 201, resp.text
        return str(resp.json()["loadbalancer"]["id"])

    def row(self, persona: str) -> dict[str, Any]:
        """What ``persona`` may do, call by call."""
        row: dict[str, Any] = {
            name: outcome(self.call(persona, "GET", path))
            for name, path in (("providers", "/lbaas/providers"), ("flavors", "/lbaas/flavors"),
                               ("availability zones", "/lbaas/availabilityzones"))}
        listed = self.call(persona, "GET", "/lbaas/loadbalancers")
        short = {self.keystone.projects[project]: name for name, project in PROJECTS.items()}
        row["load balancers listed"] = sorted(
            {short[lb["project_id"]] for lb in listed.json()["loadbalancers"]}
        ) if listed.ok else outcome(listed)
        for name, lb in self.lbs.items():
            row[f"read {name}"] = outcome(self.call(persona, "GET", f"/lbaas/loadbalancers/{lb}"),
                                          hidden=True)
        for name, lb in self.lbs.items():
            change = {"loadbalancer": {"description": f"changed by {persona}"}}
            resp = self.call(persona, "PUT", f"/lbaas/loadbalancers/{lb}", change)
            if resp.ok:
                servers.settle_db(self.server.db_url, lb)
            row[f"change {name}"] = outcome(resp, hidden=True)
        row["create"] = outcome(self._create_lb(persona))
        quota = f"/lbaas/quotas/{self.keystone.projects[PROJECTS['A']]}"
        row["read quota A"] = outcome(self.call(persona, "GET", quota))
        row["change quota A"] = outcome(self.call(persona, "PUT", quota,
                                                  {"quota": {"member": 1000}}))
        row["amphorae"] = outcome(self.call(persona, "GET", "/octavia/amphorae"))
        return row


@contextlib.contextmanager
def model_api(model: str, keystone: ks.Keystone, state: pathlib.Path) -> Iterator[ModelAPI]:
    policy = f"\n[oslo_policy]\npolicy_file = {POLICY_DIR / f'{model}.yaml'}\n"
    with servers.running_api("sqlite", state, f"policy-{model}",
                             keystone.authtoken_config() + policy) as server:
        yield ModelAPI(server, keystone)


@pytest.mark.parametrize(("model", "table"), [("advanced", ADVANCED),
                                              ("owner_or_admin", OWNER_OR_ADMIN)])
def test_each_persona_under_the_model(model, table, keystone, tmp_path_factory):
    with model_api(model, keystone, tmp_path_factory.mktemp(f"api-{model}")) as api:
        decided = {persona: api.row(persona) for persona in table}
    assert decided == {persona: expected_row(persona, *spec) for persona, spec in table.items()}

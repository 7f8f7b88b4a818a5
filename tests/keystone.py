"""A real OpenStack Keystone for the tests and the benchmark.

The `keystone` package from PyPI runs from its own venv (made and cached in
~/.cache/amphorae/venv-keystone by scripts/keystone-venv), on SQLite with fernet tokens,
served by gunicorn on a free loopback port. It is bootstrapped (user `admin`), seeded
with two projects and a user for each role of both of Octavia's role models, and given a
`load-balancer` service whose endpoint (and a `network` one) point at the API under test.
Everything lives in one `amph-keystone-*` directory, removed with the server afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests import servers

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = pathlib.Path(os.environ.get("KEYSTONE_VENV") or pathlib.Path(
    os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    / "amphorae" / "venv-keystone")
ADMIN_PASSWORD = "amph-admin-secret"
PASSWORD = "amph-user-secret"
REGION = "RegionOne"
DOMAIN = "Default"
SERVICE_PROJECT = "service"
PROJECT_A = "project-a"
PROJECT_B = "project-b"
# The catalog's services the API provides: the load balancer API itself, and the
# networks and subnets of its local network driver at Neutron's paths (the `openstack`
# command's load balancer commands need a network endpoint).
SERVICES = (("load-balancer", "octavia"), ("network", "neutron"))
# A role outside both role models: a valid token that may do nothing here.
OTHER_ROLE = "other"
LB_ROLES = ("load-balancer_admin", "load-balancer_quota_admin",
            "load-balancer_global_observer", "load-balancer_member", "load-balancer_observer")


@dataclasses.dataclass(frozen=True)
class Persona:
    user: str
    project: str | None  # None: a system-scoped token
    role: str


SERVICE_USER = Persona("octavia", SERVICE_PROJECT, "service")
PERSONAS = {p.user: p for p in (
    Persona("project-a-admin", PROJECT_A, "admin"),
    Persona("project-a-member", PROJECT_A, "member"),
    Persona("project-a-reader", PROJECT_A, "reader"),
    Persona("project-a-other", PROJECT_A, OTHER_ROLE),
    Persona("project-b-member", PROJECT_B, "member"),
    Persona("project-b-reader", PROJECT_B, "reader"),
    Persona("lb-admin", PROJECT_A, "load-balancer_admin"),
    Persona("lb-quota-admin", PROJECT_A, "load-balancer_quota_admin"),
    Persona("lb-global-observer", PROJECT_A, "load-balancer_global_observer"),
    Persona("lb-member", PROJECT_A, "load-balancer_member"),
    Persona("lb-observer", PROJECT_A, "load-balancer_observer"),
    Persona("lb-member-b", PROJECT_B, "load-balancer_member"),
    Persona("system-admin", None, "admin"),
    Persona("system-reader", None, "reader"),
)}

# keystone parses sys.argv with oslo.config at import, which would choke on gunicorn's.
WSGI_SHIM = """import sys
sys.argv = sys.argv[:1]
from keystone.server.wsgi import initialize_public_application
application = initialize_public_application()
"""


def ensure_venv() -> None:
    """Install Keystone's venv unless the cached one is current (a no-op then)."""
    subprocess.run([str(ROOT / "scripts" / "keystone-venv")], check=True, timeout=900)


def _config(state: pathlib.Path) -> str:
    # One gunicorn worker: SQLite serialises writers anyway, and with one process the
    # in-memory cache is coherent. bcrypt cost 4 keeps password logins at ~10 ms.
    return f"""[DEFAULT]
log_file = {state}/keystone.log

[database]
connection = sqlite:///{state}/keystone.db

[token]
provider = fernet

[fernet_tokens]
key_repository = {state}/fernet-keys

[fernet_receipts]
key_repository = {state}/fernet-keys

[credential]
key_repository = {state}/credential-keys

[identity]
password_hash_rounds = 4

[cache]
enabled = true
backend = dogpile.cache.memory

[oslo_policy]
enforce_new_defaults = true
"""


def _manage(state: pathlib.Path, *args: str) -> None:
    cmd = [str(VENV / "bin" / "keystone-manage"), "--config-file",
           str(state / "keystone.conf"), *args]
    with open(state / "manage.log", "ab") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    if done.returncode:
        log_tail = (state / "manage.log").read_text()[-4000:]
        raise RuntimeError(f"keystone-manage {args[0]} failed:\n{log_tail}")


def _initialise(state: pathlib.Path, url: str) -> None:
    """Database, keys and the bootstrap admin with the identity endpoint at ``url``."""
    for keys in ("fernet-keys", "credential-keys"):
        (state / keys).mkdir(mode=0o700)
    _manage(state, "db_sync")
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    _manage(state, "fernet_setup", *user)
    _manage(state, "credential_setup", *user)
    _manage(state, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
            "--bootstrap-region-id", REGION, "--bootstrap-admin-url", url,
            "--bootstrap-internal-url", url, "--bootstrap-public-url", url)


def _start(state: pathlib.Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [str(VENV / "bin" / "gunicorn"), "--chdir", str(state),
           "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "120",
           "--access-logfile", str(state / "access.log"), "--no-control-socket",
           "keystone_wsgi:application"]
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(state / "keystone.conf")}
    log = open(state / "server.log", "ab")  # noqa: SIM115 - closed with the process
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, state: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    logs = "\n".join(f"--- {name}\n{(state / name).read_text()[-4000:]}"
                     for name in ("server.log", "keystone.log") if (state / name).exists())
    raise RuntimeError(f"Keystone did not come up at {url}:\n{logs}")


class Keystone:
    """A running, seeded Keystone: ids of what it holds and ways to log in."""

    def __init__(self, url: str, state: pathlib.Path) -> None:
        self.url = url
        self.state = state
        self.admin = self.session_for("admin", "admin", ADMIN_PASSWORD)
        self.roles: dict[str, str] = {}
        self.projects: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.endpoints: list[str] = []

    # --- requests as the admin ------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.admin.request(self.url + path, method, json=body, raise_exc=False)
        if resp.status_code >= 400:
            raise RuntimeError(f"keystone {method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    def _create(self, kind: str, plural: str, **fields: Any) -> str:
        return str(self._call("POST", f"/{plural}", {kind: fields})[kind]["id"])

    def seed(self) -> None:
        """Projects, roles, one user per persona, and the load-balancer service."""
        self.roles = {r["name"]: r["id"] for r in self._call("GET", "/roles")["roles"]}
        for name in (*LB_ROLES, OTHER_ROLE):
            self.roles[name] = self._create("role", "roles", name=name)
        for name in (SERVICE_PROJECT, PROJECT_A, PROJECT_B):
            self.projects[name] = self._create("project", "projects", name=name,
                                               domain_id="default")
        for persona in (SERVICE_USER, *PERSONAS.values()):
            user = self._create("user", "users", name=persona.user, password=PASSWORD,
                                domain_id="default")
            self.users[persona.user] = user
            where = (f"/projects/{self.projects[persona.project]}" if persona.project
                     else "/system")
            self._call("PUT", f"{where}/users/{user}/roles/{self.roles[persona.role]}")
        for kind, name in SERVICES:
            service = self._create("service", "services", type=kind, name=name,
                                   description="amphorae under test")
            self.endpoints += [
                self._create("endpoint", "endpoints", service_id=service,
                             interface=interface, url="http://127.0.0.1:9", region_id=REGION)
                for interface in ("public", "internal", "admin")]

    def ids(self) -> dict[str, Any]:
        """What seed() created, saved with the template."""
        identity = [e["id"] for e in self._call("GET", "/endpoints")["endpoints"]
                    if e["url"] == self.url]
        return {"roles": self.roles, "projects": self.projects, "users": self.users,
                "endpoints": self.endpoints, "identity_endpoints": identity}

    def restore(self, ids: dict[str, Any]) -> None:
        """Take over a template's ids; its identity endpoints name the old port."""
        self.roles, self.projects = ids["roles"], ids["projects"]
        self.users, self.endpoints = ids["users"], ids["endpoints"]
        for endpoint in ids["identity_endpoints"]:
            self._call("PATCH", f"/endpoints/{endpoint}", {"endpoint": {"url": self.url}})

    def set_endpoint(self, url: str) -> None:
        """Point the catalog's load-balancer and network endpoints at the API under test."""
        for endpoint in self.endpoints:
            self._call("PATCH", f"/endpoints/{endpoint}", {"endpoint": {"url": url}})

    def validations(self) -> int:
        """How many token validations (GET /v3/auth/tokens) Keystone has answered."""
        log = self.state / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return sum('"GET /v3/auth/tokens ' in line for line in lines)

    # --- logging in -----------------------------------------------------------------

    def session_for(self, project: str | None, user: str,
                    password: str = PASSWORD) -> ks_session.Session:
        """A password login of ``user``, scoped to ``project`` (None: the system)."""
        scope: dict[str, Any] = {"system_scope": "all"}
        if project:
            scope = {"project_name": project, "project_domain_name": DOMAIN}
        auth = v3.Password(auth_url=self.url, username=user, password=password,
                           user_domain_name=DOMAIN, **scope)
        return ks_session.Session(auth=auth)

    def session(self, persona: str) -> ks_session.Session:
        p = PERSONAS[persona]
        return self.session_for(p.project, p.user)

    def token(self, persona: str) -> str:
        return str(self.session(persona).get_token())

    def auth_args(self, persona: str) -> dict[str, str]:
        """openstacksdk's `auth` for the persona (password auth, catalog lookup)."""
        p = PERSONAS[persona]
        args = {"auth_url": self.url, "username": p.user, "password": PASSWORD,
                "user_domain_name": DOMAIN}
        if p.project:
            return {**args, "project_name": p.project, "project_domain_name": DOMAIN}
        return {**args, "system_scope": "all"}

    def cli_env(self, persona: str) -> dict[str, str]:
        """The OS_* variables the `openstack` command logs in with."""
        env = {"OS_" + key.upper(): value for key, value in self.auth_args(persona).items()}
        return {**env, "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": REGION,
                "OS_INTERFACE": "public"}

    def expiring_token(self, persona: str, seconds: int) -> tuple[str, dt.datetime]:
        """A real token that expires in ``seconds``: Keystone caps a token at the expiry
        of the application credential it was issued for."""
        sess = self.session(persona)
        user = sess.get_user_id()
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(
            microsecond=0)
        body = {"application_credential": {
            "name": f"amph-expiring-{time.monotonic_ns()}",
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S")}}
        resp = sess.post(f"{self.url}/users/{user}/application_credentials", json=body)
        cred = resp.json()["application_credential"]
        auth = v3.ApplicationCredential(auth_url=self.url, application_credential_id=cred["id"],
                                        application_credential_secret=cred["secret"])
        return str(ks_session.Session(auth=auth).get_token()), expires

    def authtoken_config(self) -> str:
        """The API's configuration for checking tokens against this Keystone."""
        return f"""
[api_settings]
auth_strategy = keystone

[keystone_authtoken]
www_authenticate_uri = {self.url}
auth_url = {self.url}
auth_type = password
username = {SERVICE_USER.user}
password = {PASSWORD}
project_name = {SERVICE_PROJECT}
user_domain_name = {DOMAIN}
project_domain_name = {DOMAIN}
service_token_roles_required = true
"""


# --- a seeded template, so that later runs skip keystone-manage and the seeding ------------


def _template() -> pathlib.Path:
    """Where the seeded state for this venv and these personas is kept."""
    stamp = (VENV / ".installed").read_text()
    seed = repr((stamp, sorted(PERSONAS.items()), SERVICE_USER, LB_ROLES, OTHER_ROLE,
                 SERVICES, ADMIN_PASSWORD, PASSWORD, REGION))
    return VENV / "seeded" / hashlib.sha256(seed.encode()).hexdigest()[:16]


def _save_template(state: pathlib.Path, keystone: Keystone, template: pathlib.Path) -> None:
    import sqlite3

    partial = pathlib.Path(tempfile.mkdtemp(prefix="partial-", dir=template.parent))
    try:
        with sqlite3.connect(state / "keystone.db") as src, \
                sqlite3.connect(partial / "keystone.db") as dst:
            src.backup(dst)  # a consistent copy while the server runs
        for keys in ("fernet-keys", "credential-keys"):
            shutil.copytree(state / keys, partial / keys)
        (partial / "ids.json").write_text(json.dumps(keystone.ids()))
        partial.rename(template)  # atomic: another xdist worker may race us
    except OSError:
        pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _restore_template(template: pathlib.Path, state: pathlib.Path) -> dict[str, Any]:
    shutil.copy2(template / "keystone.db", state / "keystone.db")
    for keys in ("fernet-keys", "credential-keys"):
        shutil.copytree(template / keys, state / keys)
    return dict(json.loads((template / "ids.json").read_text()))


@contextlib.contextmanager
def running_keystone() -> Iterator[Keystone]:
    """Install (cached), initialise, start and seed a Keystone; stop and remove it after.

    The first run saves the seeded database and keys next to the venv; later runs start
    from a copy of them (about 3 s instead of about 25 s)."""
    ensure_venv()
    template = _template()
    template.parent.mkdir(exist_ok=True)
    state = pathlib.Path(tempfile.mkdtemp(prefix="amph-keystone-"))
    proc = None
    try:
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}/v3"
        (state / "keystone.conf").write_text(_config(state))
        (state / "keystone_wsgi.py").write_text(WSGI_SHIM)
        ids = _restore_template(template, state) if template.is_dir() else None
        if ids is None:
            _initialise(state, url)
        proc = _start(state, port)
        _wait_ready(proc, url, state)
        keystone = Keystone(url, state)
        if ids is None:
            keystone.seed()
            _save_template(state, keystone, template)
        else:
            keystone.restore(ids)
        yield keystone
    finally:
        if proc is not None:
            servers.stop_group(proc, 10)  # gunicorn and its worker
        shutil.rmtree(state, ignore_errors=True)

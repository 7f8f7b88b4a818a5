"""Start and stop real `amphorae api` processes for the functional tests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import requests

from amphorae.drivers.network.local import stable_id
from tests import certstore, leftovers

PROJECT = "4c1d0a54a4d84fd7a8b9a7a1f1e0c001"
OTHER_PROJECT = "9e0f4b6c2d3a4e5f8a7b6c5d4e3f2a10"
PG_URL = os.environ.get("AMPHORAE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PUBLIC_SUBNET = stable_id("subnet", "public")
PUBLIC_NETWORK = stable_id("network", "public")
MEMBER_SUBNET = stable_id("subnet", "members")
VENV_BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class Server:
    url: str
    backend: str
    db_url: str
    config_file: pathlib.Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_database(name: str) -> Iterator[str]:
    import psycopg

    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    leftovers.register(leftovers.PG + name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(backend: str, state: pathlib.Path, tag: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{state}/amphorae.sqlite"
    elif backend == "postgresql":
        yield from _pg_database(f"amphorae_test_{tag}_{os.getpid()}")
    else:
        raise ValueError(backend)


def write_config(state: pathlib.Path, port: int, db_url: str, extra: str = "") -> pathlib.Path:
    path = state / "amphorae.conf"
    path.write_text(f"""[DEFAULT]
state_path = {state}

[api_settings]
bind_host = 127.0.0.1
bind_port = {port}
api_workers = 2

[database]
connection = {db_url}

[local_network]
subnets = public=198.18.0.0/20,members=198.18.64.0/20,public6=fd00:198:18::/64

[certificates]
storage_path = {state}/certificates
{extra}
""")
    certstore.populate(state / "certificates")
    return path


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process started in a session of its own, with everything it started:
    SIGTERM to the group, then SIGKILL after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_cli(*args: str, config_file: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    cmd = [str(VENV_BIN / "amphorae"), *args]
    if config_file:
        cmd += ["--config-file", str(config_file)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@contextlib.contextmanager
def running_api(backend: str, state: pathlib.Path, tag: str,
                extra_config: str = "") -> Iterator[Server]:
    with database(backend, state, tag) as db_url:
        port = free_port()
        conf = write_config(state, port, db_url, extra_config)
        run_cli("db", "upgrade", config_file=conf)
        log = open(state / "api.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([str(VENV_BIN / "amphorae"), "api", "--config-file", str(conf)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, proc, state / "api.log")
            yield Server(url, backend, db_url, conf, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            if backend == "sqlite":
                shutil.rmtree(state, ignore_errors=True)


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited early:\n{log.read_text()}")
        try:
            requests.get(url + "/", timeout=1)
            return
        # Timeout: the socket is bound before the workers have imported the app.
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise RuntimeError(f"API did not come up:\n{log.read_text()}")


class Client:
    """Thin requests wrapper: JSON in, (status, body) out."""

    def __init__(self, server: Server, project: str = PROJECT) -> None:
        self.server = server
        self.url = server.url
        self.http = requests.Session()
        self.http.headers["X-Project-Id"] = project
        self.http.headers["Accept"] = "application/json"

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, **params: Any) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = self.http.request(method, self.url + path, data=data, params=params or None,
                                 headers={"Content-Type": "application/json", **(headers or {})},
                                 timeout=30)
        try:
            payload = resp.json() if resp.content else None
        except ValueError:
            payload = resp.text
        return resp.status_code, payload

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return self.call("GET", path, **params)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        return self.call("PUT", path, body, **params)

    def delete(self, path: str, **params: Any) -> tuple[int, Any]:
        return self.call("DELETE", path, **params)

    # Until a worker exists, tests move objects to their final state in the database,
    # exactly as the worker will (see db.status for the transitions).
    def settle(self, lb_id: str) -> None:
        settle_db(self.server.db_url, lb_id)

    def create_lb(self, **fields: Any) -> dict[str, Any]:
        body = {"vip_subnet_id": PUBLIC_SUBNET, **fields}
        status, out = self.post("/v2/lbaas/loadbalancers", {"loadbalancer": body})
        assert status == 201, out
        self.settle(out["loadbalancer"]["id"])
        return out["loadbalancer"]


class OpenStackCLI:
    """The real `openstack` command (python-octaviaclient) with no auth."""

    def __init__(self, server: Server) -> None:
        self.base = [str(VENV_BIN / "openstack"), "--os-auth-type", "none",
                     "--os-endpoint", server.url]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def __call__(self, *args: str) -> Any:
        """Run a command that prints a value or list, with `-f json`; return it parsed."""
        out = self.run(*args, "-f", "json").stdout
        return json.loads(out) if out.strip() else None


def settle_db(db_url: str, lb_id: str) -> None:
    from tests import settle

    settle.settle(db_url, lb_id)

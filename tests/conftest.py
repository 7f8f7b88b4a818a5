"""Shared fixtures: real API server processes on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from tests import leftovers, servers


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backends", default="sqlite,postgresql",
                     help="comma list of database backends for the functional tests")


@pytest.fixture(scope="session", autouse=True)
def _leftovers_of_earlier_runs() -> None:
    """A killed run's namespaces, bridges, processes, state directories and databases go
    before this one makes its own (tests/leftovers.py: only those of processes that are
    gone, so the other xdist workers of this run, and other runs, keep theirs)."""
    leftovers.sweep()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server" in metafunc.fixturenames:
        backends = metafunc.config.getoption("--backends").split(",")
        metafunc.parametrize("backend", backends, scope="session")
    elif "database_url" in metafunc.fixturenames:
        backends = metafunc.config.getoption("--backends").split(",")
        metafunc.parametrize("backend", backends, scope="module")


@pytest.fixture(scope="module")
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database of ``backend`` at the newest schema for one test module,
    removed afterwards."""
    from amphorae.db import engine, migrate

    state = pathlib.Path(tempfile.mkdtemp(prefix="amph-db-"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    tag = f"{request.module.__name__.rsplit('.', 1)[-1]}_{worker}"
    try:
        with servers.database(backend, state, tag) as url:
            migrate.upgrade(url)
            try:
                yield url
            finally:
                engine.get_engine(url).dispose()
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory):
    """One running `amphorae api` per backend (and per xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api(backend, tmp_path_factory.mktemp(f"api-{backend}"),
                             f"{worker}") as srv:
        yield srv


@pytest.fixture
def api(server: servers.Server) -> servers.Client:
    """An HTTP client for the running API, as project ``servers.PROJECT``."""
    return servers.Client(server)


@pytest.fixture
def sdk(server: servers.Server):
    """openstacksdk with no auth and the API as the load-balancer endpoint."""
    import openstack

    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": server.url},
        load_balancer_endpoint_override=server.url)
    yield conn.load_balancer
    conn.close()


@pytest.fixture
def cli(server: servers.Server):
    """Run `openstack <args>` against the API; JSON output is parsed."""
    return servers.OpenStackCLI(server)


@pytest.fixture(scope="session")
def keystone():
    """A real, seeded Keystone (tests/keystone.py), shared by the modules that check
    tokens."""
    from tests import keystone as ks

    with ks.running_keystone() as keystone:
        yield keystone


@pytest.fixture(scope="session")
def cloud():
    """Real Keystone, Neutron, Barbican and Nova (tests/openstack.py), shared by the
    cloud-mode tests; started once for the run, stopped at its end."""
    from tests import cloud as osdev

    return osdev.ensure_running()


def pytest_configure(config: pytest.Config) -> None:
    """Name this run (before xdist starts its workers, which inherit it), so that the
    services it starts are told from another run's (tests/cloud.py)."""
    from tests import cloud as osdev

    if not hasattr(config, "workerinput"):
        os.environ[osdev.RUN_ID_VARIABLE] = uuid.uuid4().hex


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The OpenStack services a run started stop once, when the whole run ends (on the
    xdist controller, after every worker)."""
    if hasattr(session.config, "workerinput"):
        return
    from tests import cloud as osdev

    osdev.stop_if_started()

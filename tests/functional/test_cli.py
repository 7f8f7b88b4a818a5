"""The `amphorae` command as an operator meets it: every command's --help, one clear line
for a configuration that cannot be used, `amphorae status` over a real database, and a
clean stop of `amphorae up` (with Octavia's no-op drivers: no root needed)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from amphorae import cli
from amphorae.common.timeutil import utcnow
from amphorae.db import engine
from amphorae.db import models as m
from tests import leftovers, servers

AMPHORAE = str(servers.VENV_BIN / "amphorae")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMPHORAE, *args], capture_output=True, text=True,
                          timeout=timeout)


# -- --help ---------------------------------------------------------------------------------

def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command that runs something (`db upgrade`, not `db`), with its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_command_describes_itself_and_lists_its_options():
    leaves = dict(_leaves(cli.parser()))
    assert set(leaves) == {
        ("up",), ("api",), ("worker",), ("health",), ("housekeeping",), ("agent",),
        ("status",), ("db", "upgrade"), ("db", "current"), ("config", "sample"),
        ("policy", "sample")}
    for path, parser in leaves.items():
        text = parser.format_help()
        assert text.startswith(f"usage: amphorae {' '.join(path)} "), text
        assert parser.description and len(parser.description) > 40, path
        assert " ".join(parser.description.split()[:4]) in " ".join(text.split()), path
        for option in ("--config-file PATH", "--config-dir DIR", "--debug"):
            assert option in text, (path, option)
        for action in parser._actions:  # every option and argument is explained
            assert action.help, (path, action.dest)


def test_help_of_a_nested_command_is_its_own():
    out = run("db", "upgrade", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: amphorae db upgrade ")
    assert "Alembic migrations" in out.stdout and "--config-file PATH" in out.stdout
    top = run("--help").stdout
    for command in ("up", "status", "db", "config", "policy"):
        assert f"\n    {command} " in top


def test_debug_logs_at_debug_level():
    quiet, loud = run("policy", "sample"), run("policy", "sample", "--debug")
    assert quiet.stdout == loud.stdout and " DEBUG " not in quiet.stderr
    assert " DEBUG " in loud.stderr


# -- a configuration that cannot be used ----------------------------------------------------

@pytest.mark.parametrize(("content", "expected"), [
    (None, "{path}: no such file"),
    ("[api_settings\nbind_port = 1\n", "{path}:1: Invalid section"),
    ("bind_port = 1\n", "{path}:1: Section must be started before assignment"),
    ("[api_settings]\nbind_port = eighty\n",
     "{path}: [api_settings] bind_port: invalid value: invalid literal for int()"),
    ("[controller_worker]\nloadbalancer_topology = TRIANGLE\n",
     "{path}: [controller_worker] loadbalancer_topology: invalid value: Valid values are"),
    ("[DEFAULT]\ndebug = maybe\n", "{path}: [DEFAULT] debug: invalid value"),
], ids=["missing", "unclosed-section", "no-section", "not-an-int", "not-a-choice",
        "not-a-bool"])
def test_a_bad_config_file_is_one_line_and_exit_code_2(tmp_path, content, expected):
    path = tmp_path / "amphorae.conf"
    if content is not None:
        path.write_text(content)
    for command in (["status"], ["db", "current"], ["up"]):
        out = run(*command, "--config-file", str(path))
        assert out.returncode == 2, (command, out)
        assert out.stdout == ""
        assert out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("amphorae: " + expected.format(path=path)), out.stderr


def test_a_missing_config_dir_is_one_line(tmp_path):
    out = run("status", "--config-dir", str(tmp_path / "nothing"))
    assert (out.returncode, out.stderr) == (2, f"amphorae: {tmp_path}/nothing: no such "
                                               "directory\n")


# -- amphorae status --------------------------------------------------------------------------

def _config(folder: pathlib.Path, db_url: str, port: int, extra: str = "") -> pathlib.Path:
    path = folder / "amphorae.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {folder}\n[database]\nconnection = {db_url}\n"
                    f"[api_settings]\nbind_host = 127.0.0.1\nbind_port = {port}\n"
                    f"[health_manager]\nheartbeat_timeout = 30\n{extra}")
    return path


def _rows(db_url: str, now: dt.datetime) -> None:
    """Load balancers, amphorae and jobs in several states."""
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    with engine.transaction(url=db_url) as s:
        lbs = [m.LoadBalancer(provisioning_status=p, operating_status=o, project_id="p")
               for p, o in (("ACTIVE", "ONLINE"), ("ACTIVE", "ONLINE"),
                            ("ACTIVE", "DEGRADED"), ("PENDING_CREATE", "OFFLINE"),
                            ("ERROR", "ERROR"))]
        s.add_all(lbs)
        s.flush()
        amps = [m.Amphora(load_balancer_id=lbs[0].id, role="MASTER", status="ALLOCATED"),
                m.Amphora(load_balancer_id=lbs[0].id, role="BACKUP", status="ALLOCATED"),
                m.Amphora(load_balancer_id=lbs[1].id, role="STANDALONE", status="ALLOCATED"),
                m.Amphora(load_balancer_id=lbs[3].id, role="STANDALONE", status="BOOTING"),
                m.Amphora(role="STANDALONE", status="DELETED")]
        s.add_all(amps)
        s.flush()
        s.add_all([m.AmphoraHealth(amphora_id=amps[0].id, last_update=ago(2)),
                   m.AmphoraHealth(amphora_id=amps[1].id, last_update=ago(300))])
        # amps[2] serves and never reported; amps[3] boots (not judged).
        s.add_all([
            m.Job(load_balancer_id=lbs[3].id, action="reconcile", created_at=ago(40),
                  lease_owner="host-a:11:aaaaaa", lease_expires_at=ago(-8)),
            m.Job(load_balancer_id=lbs[3].id, action="reconcile", created_at=ago(20),
                  lease_owner="host-a:11:aaaaaa", lease_expires_at=ago(-8)),
            m.Job(load_balancer_id=lbs[4].id, action="reconcile", created_at=ago(90),
                  lease_owner="host-b:22:bbbbbb", lease_expires_at=ago(60)),
            m.Job(load_balancer_id=lbs[2].id, action="reconcile", created_at=ago(5),
                  not_before=ago(-30)),
            m.Job(load_balancer_id=lbs[1].id, action="reconcile", created_at=ago(1))])


def test_status_reports_what_the_database_holds(database_url, tmp_path):
    """On SQLite and PostgreSQL, with nothing answering on the API port."""
    with engine.transaction(url=database_url) as s:  # the module's database: start empty
        for model in (m.Job, m.AmphoraHealth, m.Amphora, m.LoadBalancer):
            s.query(model).delete()
    now = utcnow()
    _rows(database_url, now)
    port = servers.free_port()
    conf = _config(tmp_path, database_url, port)

    out = run("status", "--format", "json", "--config-file", str(conf))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["api"] == {"url": f"http://127.0.0.1:{port}/", "answering": False,
                          "problem": "[Errno 111] Connection refused"}
    assert doc["load_balancers"] == {
        "provisioning_status": {"ACTIVE": 3, "ERROR": 1, "PENDING_CREATE": 1},
        "operating_status": {"DEGRADED": 1, "ERROR": 1, "OFFLINE": 1, "ONLINE": 2}}
    assert doc["amphorae"] == {"BACKUP": {"ALLOCATED": 1}, "MASTER": {"ALLOCATED": 1},
                               "STANDALONE": {"ALLOCATED": 1, "BOOTING": 1, "DELETED": 1}}
    assert (doc["amphorae_stale"], doc["amphorae_unreported"]) == (1, 1)
    assert doc["jobs"] == {"ready": 2, "leased": 2, "delayed": 1}
    assert 89 <= doc["oldest_job_age"] < 120
    assert 1 <= doc["last_heartbeat_age"] < 30
    (a, b) = doc["leases"]
    assert (a["owner"], a["jobs"], b["owner"], b["jobs"]) == (
        "host-a:11:aaaaaa", 2, "host-b:22:bbbbbb", 1)
    assert 0 < a["expires_in"] <= 8 and -90 < b["expires_in"] <= -60

    text = run("status", "--config-file", str(conf))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    column = lines[0].index(lines[0].split()[1])  # values start in one column
    for line in lines:
        if len(line) > column:
            assert line[column - 1] == " " and line[column] != " ", text.stdout
    for expected in (
            f"  api             not answering on http://127.0.0.1:{port}/",
            "  workers         host-a:11:aaaaaa: 2 job(s), lease expires in ",
            "                  host-b:22:bbbbbb: 1 job(s), lease expired ",
            "  health manager  last heartbeat written ",
            "  housekeeping    unknown: it records nothing in the database",
            "load balancers    5",
            "  provisioning    ACTIVE 3, ERROR 1, PENDING_CREATE 1",
            "  operating       DEGRADED 1, ERROR 1, OFFLINE 1, ONLINE 2",
            "amphorae          5; serving with a heartbeat older than 30 s: 1, never "
            "reported: 1",
            "  STANDALONE      ALLOCATED 1, BOOTING 1, DELETED 1",
            "jobs              5 (ready 2, leased 2, delayed 1), oldest "):
        assert any(line.startswith(expected) for line in lines), (expected, text.stdout)


def test_status_of_a_database_without_schema_or_file(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    conf = _config(tmp_path, f"sqlite:///{empty}", servers.free_port())
    out = run("status", "--config-file", str(conf))
    assert out.returncode == 1
    assert out.stderr.startswith(f"amphorae: database sqlite:///{empty}: no such table")
    assert "amphorae db upgrade" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([AMPHORAE, "status"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "AMPHORAE_STATE_PATH": str(tmp_path / "new")})
    assert (out.returncode, out.stderr) == (1, f"amphorae: no database at {tmp_path}/new/"
                                               "amphorae.sqlite yet (a service or "
                                               "`amphorae db upgrade` creates it)\n")
    assert not (tmp_path / "new").exists()


# -- a clean stop of amphorae up --------------------------------------------------------------

NOOP = """
[controller_worker]
compute_driver = compute_noop_driver
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver
[health_manager]
bind_ip = 127.0.0.1
bind_port = {health_port}
"""


@pytest.fixture
def state() -> Iterator[pathlib.Path]:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="amph-cli-"))
    leftovers.register(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start_up(state: pathlib.Path) -> tuple[pathlib.Path, int, pathlib.Path,
                                            subprocess.Popen[bytes]]:
    """`amphorae up` on the no-op drivers: its config file, API port, log and process."""
    port = servers.free_port()
    conf = _config(state, f"sqlite:///{state}/amphorae.sqlite", port,
                   NOOP.format(health_port=servers.free_port()))
    log = state / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([AMPHORAE, "up", "--config-file", str(conf)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return conf, port, log, proc


def _wait_answering(http: requests.Session, url: str, proc: subprocess.Popen[bytes],
                    log: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(requests.ConnectionError):
            http.get(url + "/", timeout=5)
            return
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl-c"])
def test_up_stops_cleanly_and_fast(state, ctrl_c):
    """SIGTERM with a kept-alive connection and a connection that sent nothing open:
    exit code 0, nothing logged at WARNING or above, no SIGKILL, the silent connection
    closed at once. gunicorn alone keeps the first 2 s and the second up to 5 s (past
    graceful_timeout, when the arbiter kills the worker). Ctrl-C: SIGINT to the whole
    process group, as a terminal sends it (gunicorn's quick stop). The stop time is
    printed."""
    conf, port, log, proc = _start_up(state)
    url = f"http://127.0.0.1:{port}"
    try:
        http = requests.Session()  # keeps its connection alive
        _wait_answering(http, url, proc, log)
        created = http.post(url + "/v2/lbaas/loadbalancers", headers={"X-Project-Id": "p"},
                            json={"loadbalancer": {"vip_subnet_id": str(uuid.uuid4())}}, timeout=30)
        assert created.status_code == 201, created.text

        status = json.loads(run("status", "--format", "json", "--config-file",
                                str(conf)).stdout)
        assert status["api"]["answering"] and status["api"]["http_status"] == 200
        assert sum(status["load_balancers"]["provisioning_status"].values()) == 1

        silent = socket.create_connection(("127.0.0.1", port))  # connected, sends nothing
        time.sleep(0.3)  # accepted by a worker, which waits for its first byte
        started = time.monotonic()
        if ctrl_c:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        # gunicorn alone gives it 5 s to send a first byte (its thread is joined at
        # exit); a stopping API closes it at once.
        silent.settimeout(3)
        with contextlib.suppress(ConnectionResetError):
            assert silent.recv(1) == b""
        code = proc.wait(30)
        took = time.monotonic() - started
        silent.close()
        http.close()
    finally:
        servers.stop_group(proc, 5)
    output = log.read_text()
    print(f"amphorae up stopped in {took:.2f} s")
    assert code == 0, output
    bad = [line for line in output.splitlines()
           if any(word in line for word in ("ERROR", "WARNING", "SIGKILL", "Traceback"))]
    assert not bad, output


def test_up_fails_when_its_api_process_dies(state):
    """The API process killed under `amphorae up`: the whole service stops, says why,
    and exits 1, so that a supervisor (systemd's Restart=on-failure) restarts it."""
    _conf, port, log, proc = _start_up(state)
    try:
        with requests.Session() as http:
            _wait_answering(http, f"http://127.0.0.1:{port}", proc, log)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True, check=True).stdout.split()
        assert len(children) == 1, children  # the API's gunicorn master
        os.kill(int(children[0]), signal.SIGKILL)
        code = proc.wait(30)
    finally:
        servers.stop_group(proc, 5)
    output = log.read_text()
    assert code == 1, output
    assert "the API process exited (-9): stopping" in output, output

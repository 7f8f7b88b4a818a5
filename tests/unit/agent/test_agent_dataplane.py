"""The agent's keepalived and nftables endpoints in-process (falcon's test client), with
stand-in ``keepalived`` and ``nft`` commands: file handling, validation and error shapes.
The real tools run in tests/integration/test_agent_vrrp_nft.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from amphorae.agent import api
from amphorae.agent import haproxy as hap
from amphorae.agent import keepalived as ka
from amphorae.agent import nftables as nft

# Refuses any file that mentions "bad" (as keepalived -t / nft -c would), logs its calls;
# anything but a check exits at once, as a keepalived that cannot start would.
FAKE = """#!/bin/sh
echo "$*" >> {calls}
file=""
prev=""
for arg in "$@"; do
    [ "$prev" = "-f" ] && file="$arg"
    prev="$arg"
done
if [ "$file" = "-" ]; then cat > /dev/null; exit 0; fi
if grep -q bad "$file"; then echo "line 1: bad thing in $file" >&2; exit 3; fi
case "$1" in -t|-c|-f) exit 0;; esac
echo "cannot start" >&2
exit 1
"""


@pytest.fixture
def env() -> Iterator[tuple[falcon.testing.TestClient, Path]]:
    root = Path(tempfile.mkdtemp(prefix="amphorae-dataplane-"))
    try:
        fake = root / "fake-tool"
        fake.write_text(FAKE.format(calls=root / "calls"))
        fake.chmod(0o755)
        base = root / "base"
        sup = hap.Supervisor(base, "/bin/false")
        vrrp = ka.Keepalived(base, str(fake), start_timeout=5)
        rules = nft.Nftables(base, str(fake), forwarding=False)
        yield falcon.testing.TestClient(api.create_app(sup, vrrp, rules)), root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_vrrp_upload_check_and_keep_previous(env) -> None:
    client, root = env
    vrrp_dir = root / "base" / "vrrp.d"
    resp = client.simulate_put("/1.0/vrrp/upload", body=b"vrrp_instance x {}\n")
    assert resp.status_code == 200 and resp.json == {"message": "OK"}
    assert resp.headers["etag"].strip('"')
    assert (vrrp_dir / "keepalived.conf").read_bytes() == b"vrrp_instance x {}\n"
    assert "-t -e -f" in (root / "calls").read_text()

    resp = client.simulate_put("/1.0/vrrp/upload", body=b"bad config\n")
    assert resp.status_code == 400
    assert resp.json["message"] == "Invalid request"
    assert "bad thing" in resp.json["details"]
    assert (vrrp_dir / "keepalived.conf").read_bytes() == b"vrrp_instance x {}\n"
    assert (vrrp_dir / "keepalived.conf.failed").read_bytes() == b"bad config\n"
    assert not (vrrp_dir / "keepalived.conf.new").exists()
    resp = client.simulate_get("/1.0/vrrp/upload")
    assert resp.status_code == 200 and resp.text == "vrrp_instance x {}\n"
    # No load balancer operation reaches the folder: its name is no load balancer id.
    assert client.simulate_delete("/1.0/listeners/vrrp.d").status_code == 400
    assert (vrrp_dir / "keepalived.conf").is_file()


def test_vrrp_check_script(env) -> None:
    client, root = env
    resp = client.simulate_put("/1.0/vrrp/check_script", body=b"#!/bin/sh\nexit 0\n")
    assert resp.status_code == 200
    path = root / "base" / "vrrp.d" / "check_script.sh"
    assert path.read_bytes() == b"#!/bin/sh\nexit 0\n"
    assert path.stat().st_mode & 0o777 == 0o755
    resp = client.simulate_put("/1.0/vrrp/check_script", body=b"exit 0\n")
    assert resp.status_code == 400 and "#!" in resp.json["details"]


def test_vrrp_actions(env) -> None:
    client, _ = env
    assert client.simulate_get("/1.0/vrrp/upload").status_code == 404
    resp = client.simulate_put("/1.0/vrrp/start")
    assert resp.status_code == 404 and resp.json["message"] == "VRRP Config Not Found"
    resp = client.simulate_put("/1.0/vrrp/stop")
    assert resp.status_code == 202
    assert resp.json == {"message": "OK", "details": "keepalived stopped: not running"}
    resp = client.simulate_put("/1.0/vrrp/restart")
    assert resp.status_code == 400 and "Unknown action" in resp.json["details"]

    client.simulate_put("/1.0/vrrp/upload", body=b"ok\n")
    for action in ("start", "reload"):  # reload of a stopped keepalived starts it
        resp = client.simulate_put(f"/1.0/vrrp/{action}")
        assert resp.status_code == 500
        assert resp.json == {"message": "keepalived failed to start",
                             "details": "cannot start"}


def test_nftables_apply_keep_delete(env) -> None:
    client, root = env
    nft_dir = root / "base" / "nftables.d"
    assert client.simulate_get("/1.0/nftables").status_code == 404
    resp = client.simulate_put("/1.0/nftables", body=b"table inet amphorae {}\n")
    assert resp.status_code == 200 and resp.json == {"message": "OK"}
    assert (nft_dir / "rules.nft").read_bytes() == b"table inet amphorae {}\n"
    calls = (root / "calls").read_text().splitlines()
    assert calls == [f"-c -f {nft_dir / 'rules.nft.new'}", f"-f {nft_dir / 'rules.nft.new'}"]

    resp = client.simulate_put("/1.0/nftables", body=b"bad rules\n")
    assert resp.status_code == 400 and "bad thing" in resp.json["details"]
    assert client.simulate_get("/1.0/nftables").text == "table inet amphorae {}\n"
    assert (nft_dir / "rules.nft.failed").read_bytes() == b"bad rules\n"

    resp = client.simulate_delete("/1.0/nftables")
    assert resp.status_code == 200 and resp.json == {"message": "OK"}
    assert (root / "calls").read_text().splitlines()[-1] == "-f -"
    assert not (nft_dir / "rules.nft").exists()
    assert client.simulate_get("/1.0/nftables").status_code == 404


def test_keepalived_pid_ignores_strangers(tmp_path: Path) -> None:
    vrrp = ka.Keepalived(tmp_path, "/bin/false")
    assert vrrp.pid() is None
    vrrp.files.root.mkdir()
    vrrp.files.pid_file.write_text("1\n")  # alive, but not keepalived on our config
    assert vrrp.pid() is None and not vrrp.running()


# A keepalived that starts (pid files written, argv naming the config) but ignores SIGTERM
# and SIGHUP: the stop must end it anyway.
STUBBORN = """#!/bin/bash
while [ $# -gt 0 ]; do
    case "$1" in
        -t) exit 0;;
        -f) cfg="$2"; shift;;
        -p) pid="$2"; shift;;
        -r) vrrp="$2"; shift;;
    esac
    shift
done
# The pid files are written after the exec, as keepalived writes them: a pid file naming
# this script before it became "keepalived" would race the agent's check of argv[0].
exec -a keepalived-stub bash -c 'echo $$ > "$1"; echo $$ > "$2"; trap "" TERM HUP
while :; do sleep 0.05; done' x "$pid" "$vrrp" "$cfg"
"""


def test_keepalived_start_reload_and_kill_when_stubborn(tmp_path: Path) -> None:
    stub = tmp_path / "keepalived-stub"
    stub.write_text(STUBBORN)
    stub.chmod(0o755)
    vrrp = ka.Keepalived(tmp_path / "base", str(stub), start_timeout=5, stop_timeout=0.3)
    vrrp.install_config(b"anything\n")
    try:
        assert vrrp.start() == "started"
        pid = vrrp.pid()
        assert pid is not None
        assert vrrp.start() == "reloaded" and vrrp.reload() == "reloaded"
        assert vrrp.pid() == pid
        assert vrrp.stop() == "stopped"  # SIGTERM ignored: killed
        assert vrrp.pid() is None and not hap._alive(pid)
        assert not vrrp.files.pid_file.exists()
    finally:
        pid = vrrp.pid()
        if pid is not None:
            vrrp._kill(pid)

"""The agent's configuration reader (agent/options.py) and what the agent loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amphorae.agent import options


def _file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file() -> None:
    conf = options.load([])
    assert conf.amphora_agent.bind_port == 9443
    assert conf.amphora_agent.bind_host == "::"
    assert conf.amphora_agent.amphora_id is None
    assert conf.health_manager.controller_ip_port_list == []
    assert conf.health_manager.heartbeat_interval == 1
    assert (conf.debug, conf.log_format) == (False, "text")


def test_values_are_typed_and_a_later_file_wins(tmp_path: Path) -> None:
    first = _file(tmp_path / "a.conf", "[DEFAULT]\ndebug = true\nbind_port = 1\n"
                  "[amphora_agent]\nbind_port = 9000\nbase_path = /x\nunknown = 3\n"
                  "[health_manager]\ncontroller_ip_port_list = 198.18.0.1:5555, "
                  "198.18.0.2:5555\nheartbeat_interval = 3\nheartbeat_key = k%y\n")
    second = _file(tmp_path / "b.conf", "[amphora_agent]\nbind_port = 9001\n")
    conf = options.load([first, second])
    assert conf.amphora_agent.bind_port == 9001
    assert conf.amphora_agent.base_path == "/x"  # not overridden by the second file
    assert conf.health_manager.controller_ip_port_list == ["198.18.0.1:5555",
                                                           "198.18.0.2:5555"]
    assert conf.health_manager.heartbeat_interval == 3
    assert conf.health_manager.heartbeat_key == "k%y"  # no interpolation
    assert conf.debug is True


def test_default_values_do_not_leak_into_groups(tmp_path: Path) -> None:
    conf = options.load([_file(tmp_path / "a.conf", "[DEFAULT]\nbase_path = /leak\n")])
    assert conf.amphora_agent.base_path == "/var/lib/octavia"


@pytest.mark.parametrize(("text", "named"), [
    ("[amphora_agent]\nbind_port = 70000\n", "[amphora_agent] bind_port"),
    ("[amphora_agent]\nbind_port = x\n", "[amphora_agent] bind_port"),
    ("[amphora_agent]\nuser_log_facility = 8\n", "[amphora_agent] user_log_facility"),
    ("[amphora_agent]\nbind_host = a b\n", "[amphora_agent] bind_host"),
    ("[health_manager]\nheartbeat_interval = 1.5\n", "[health_manager] heartbeat_interval"),
    ("[DEFAULT]\nlog_format = xml\n", "[DEFAULT] log_format"),
    ("[DEFAULT]\ndebug = maybe\n", "[DEFAULT] debug"),
    ("no section\n", "cannot read"),
])
def test_a_bad_value_names_its_option(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(options.ConfigError, match=named.replace("[", r"\[")
                       .replace("]", r"\]")):
        options.load([_file(tmp_path / "a.conf", text)])


def test_config_arguments_in_order(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("b.conf", "a.conf", "c.txt"):
        (tmp_path / "d" / name).write_text("")
    files = options.config_files([f"--config-file={tmp_path}/x.conf",
                                  f"--config-dir={tmp_path}/d"])
    assert files == [f"{tmp_path}/x.conf", f"{tmp_path}/d/a.conf", f"{tmp_path}/d/b.conf"]
    with pytest.raises(options.ConfigError, match="not found"):
        options.config_files([f"--config-dir={tmp_path}/none"])
    with pytest.raises(options.ConfigError, match="cannot read"):
        options.load([f"{tmp_path}/missing.conf"])


def test_the_agent_loads_nothing_of_the_controller() -> None:
    """oslo.config (~9 MiB, 75 ms), cryptography (~10 MiB) and falcon (~11 MiB with what
    it imports) stay out of every amphora: only what `amphorae agent` imports is checked,
    in a fresh interpreter."""
    code = ("import sys\n"
            "from amphorae import cli\n"
            "from amphorae.agent import main, server\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for heavy in ("oslo_config", "cryptography", "sqlalchemy", "stevedore", "tenacity",
                  "falcon"):
        assert f"'{heavy}'" not in loaded, heavy
    assert "'ssl'" in loaded  # the check sees the agent's imports at all

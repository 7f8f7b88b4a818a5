"""Configuration: embedded defaults without a file, Octavia's names, the sample file."""

from __future__ import annotations

import pathlib

from oslo_config import cfg

from amphorae.common import config, sample_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _fresh() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    config.register(conf)
    return conf


def test_defaults_without_a_file():
    conf = config.load([], _fresh())
    assert conf.api_settings.bind_host == "127.0.0.1"
    assert conf.api_settings.bind_port == 9876
    assert conf.api_settings.auth_strategy == "noauth"
    assert conf.controller_worker.loadbalancer_topology == "SINGLE"
    assert config.database_url(conf).startswith("sqlite:///")


def test_config_file_uses_octavia_names(tmp_path):
    path = tmp_path / "a.conf"
    path.write_text("[database]\nconnection = postgresql+psycopg://x@y/z\n"
                    "[api_settings]\nbind_port = 1234\n[health_manager]\nheartbeat_key = k\n")
    conf = config.load(["--config-file", str(path)], _fresh())
    assert config.database_url(conf) == "postgresql+psycopg://x@y/z"
    assert conf.api_settings.bind_port == 1234
    assert conf.health_manager.heartbeat_key == "k"


def test_sample_file_is_current():
    from amphorae import cli

    rendered = sample_config.render(cli.sample_opts())
    assert "[amphora_agent]" in rendered and "[netns_compute]" in rendered
    assert (ROOT / "etc" / "amphorae.conf.sample").read_text() == rendered


def test_every_option_of_ours_says_what_it_does():
    """keystonemiddleware's and oslo.policy's options are theirs; all others need a help
    text (the sample file and `amphorae config sample` show it)."""
    from amphorae.agent import options as agent_options
    from amphorae.drivers.compute import netns, nova

    ours = [*config.list_opts(), *netns.list_opts(), *nova.list_opts(),
            *agent_options.list_opts()]
    assert len([opt for _, opts in ours for opt in opts]) > 100
    silent = [f"[{group}] {opt.dest}" for group, opts in ours for opt in opts
              if len((opt.help or "").split()) < 3]
    assert not silent, silent

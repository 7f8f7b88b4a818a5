"""The service user's connection (drivers/cloud.py) against the real Keystone and Neutron
of tests/cloud.py: configured with Octavia's option names in a file, it logs in and
reaches Neutron through the catalog; a configuration that cannot log in says which option
is missing."""

from __future__ import annotations

import pathlib

import pytest
from oslo_config import cfg

from amphorae.drivers import cloud as cloud_conf
from tests import cloud as osdev


def _conf(tmp_path: pathlib.Path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / "amphorae.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    cloud_conf.register(conf)
    conf(["--config-file", str(path)], project="amphorae-test", default_config_files=[])
    return conf


def test_the_service_user_reaches_neutron_through_the_catalog(
        cloud: osdev.Cloud, tmp_path: pathlib.Path) -> None:
    conf = _conf(tmp_path, f"""
[service_auth]
{cloud.service_login()}
[neutron]
region_name = {osdev.REGION}
valid_interfaces = internal
""")
    conn = cloud_conf.connection(conf)
    name = "amph-connection-check"
    net = conn.network.create_network(name=name)
    try:
        assert conn.network.find_network(name).id == net.id
        assert net.project_id == cloud.service().current_project_id
    finally:
        conn.network.delete_network(net)
    assert conn.network.find_network(name) is None


def test_no_auth_type_names_the_option(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=r"\[service_auth\] auth_type"):
        cloud_conf.connection(_conf(tmp_path, "[service_auth]\nauth_url = http://127.0.0.1:9\n"))

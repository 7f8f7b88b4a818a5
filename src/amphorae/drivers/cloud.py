"""The control plane's own connection to an OpenStack cloud, configured as Octavia's.

``[service_auth]`` holds keystoneauth's session and auth-plugin options (the service user
the Neutron, Nova, Glance and Barbican drivers act as); each service's group (``[neutron]``,
``[nova]``, ``[glance]``, ``[barbican]``) holds keystoneauth's adapter options
(``region_name``, ``valid_interfaces``, ``endpoint_override``, …), which openstacksdk
reads from the same configuration. A driver adds its own options to its service's group.
"""

from __future__ import annotations

import functools

import openstack
from keystoneauth1 import loading
from oslo_config import cfg

from amphorae.common import config

SERVICE_AUTH = "service_auth"
# The groups openstacksdk reads a service's endpoint from: the services' project names.
SERVICES = ("neutron", "nova", "glance", "barbican")


def register(conf: cfg.ConfigOpts) -> None:
    loading.register_session_conf_options(conf, SERVICE_AUTH)
    loading.register_auth_conf_options(conf, SERVICE_AUTH)
    for group in SERVICES:
        loading.register_adapter_conf_options(conf, group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """For the sample file: the session options and the password plugin's (what a
    service user normally logs in with), and each service's adapter options."""
    auth = [*loading.get_session_conf_options(), *loading.get_auth_common_conf_options(),
            *loading.get_auth_plugin_conf_options("password")]
    return [(SERVICE_AUTH, auth),
            *((group, loading.get_adapter_conf_options()) for group in SERVICES)]


def connection(conf: cfg.ConfigOpts = config.CONF) -> openstack.connection.Connection:
    """A new openstacksdk connection as the service user; raises ValueError naming the
    option when ``[service_auth]`` says too little to log in."""
    auth = loading.load_auth_from_conf_options(conf, SERVICE_AUTH)
    if auth is None:
        raise ValueError("[service_auth] auth_type: not set (the cloud drivers log in "
                         "as the service user it configures)")
    session = loading.load_session_from_conf_options(conf, SERVICE_AUTH, auth=auth)
    return openstack.connection.Connection(session=session, oslo_conf=conf)


@functools.cache
def shared_connection() -> openstack.connection.Connection:
    """One connection per process for the configuration it started with (openstacksdk
    connections are thread-safe; each keeps its token until it expires)."""
    return connection(config.CONF)


register(config.CONF)

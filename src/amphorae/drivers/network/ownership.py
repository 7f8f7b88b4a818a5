"""Which deployment a host resource belongs to.

Several deployments (control planes with their own state paths, e.g. two test runs, or
a staging and a production one) may share a Linux host. Each has an id, generated once
into its state path (``<state_path>/deployment-id``), so it survives restarts and a
restarted ``amphorae up`` finds and adopts what it made before, while another state path
gets another id.

Host resources are bound to it twice: their names are derived from it (a network's
bridge hashes (deployment id, network id), so a ``public`` network of each deployment
gets its own bridge), and a bridge carries it in its interface alias (``ip link ...
alias``), which a cleanup reads to prove the bridge is its own before deleting it.
Amphora namespaces carry it in their state file (drivers/compute/netns.py).
"""

from __future__ import annotations

import os
import secrets

from oslo_config import cfg

from amphorae.common import config

DEPLOYMENT_FILE = "deployment-id"
ALIAS_PREFIX = "amphorae deployment "


def deployment_id(state_path: str | os.PathLike[str]) -> str:
    """The id of the deployment whose state path is ``state_path`` (made on first use)."""
    return config.read_or_create(os.path.join(state_path, DEPLOYMENT_FILE),
                                 lambda: secrets.token_hex(6))


def local_deployment(conf: cfg.ConfigOpts = config.CONF) -> str:
    """This process's deployment: the one of the configured state path."""
    return deployment_id(config.state_path(conf))


def alias(deployment: str) -> str:
    """The interface alias that marks a resource as ``deployment``'s."""
    return ALIAS_PREFIX + deployment


def owner(link_alias: str | None) -> str | None:
    """The deployment an interface alias names; None for any other alias (or none)."""
    if link_alias and link_alias.startswith(ALIAS_PREFIX):
        return link_alias[len(ALIAS_PREFIX):]
    return None

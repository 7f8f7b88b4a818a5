"""What the control plane needs from a compute driver: amphora instances that come and go.

The shape of Octavia's compute driver (build, delete, status), in plain values. A build
may finish later (a VM boots for a minute): it then answers BUILDING and the reconcile
comes back rather than holding a thread; the netns driver builds in well under a second
and answers ACTIVE at once.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt

from oslo_config import cfg

# Compute status of an amphora instance.
BUILDING = "BUILDING"
ACTIVE = "ACTIVE"
DELETED = "DELETED"
ERROR = "ERROR"


@dataclasses.dataclass(frozen=True)
class Instance:
    amphora_id: str
    compute_id: str  # the namespace, the Nova server id
    status: str
    lb_network_ip: str | None = None  # where its agent answers
    cert_expiration: dt.datetime | None = None  # of the agent's certificate, naive UTC
    boot_seconds: float = 0.0


class ComputeDriver(abc.ABC):
    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> ComputeDriver:
        """The driver for ``conf`` (the registry's way in)."""
        return cls()

    @abc.abstractmethod
    def build(self, amphora_id: str, server_group_id: str | None = None) -> Instance:
        """Create the amphora; on failure nothing is left behind and the error is raised.
        Idempotent: building an amphora that exists answers it as it is now, so a
        driver whose build finishes later answers BUILDING and is asked again.
        ``server_group_id``: from :meth:`create_server_group`, for a pair's members."""

    @abc.abstractmethod
    def delete(self, amphora_id: str) -> None:
        """Remove every trace of the amphora; fine on half-created or absent ones."""

    @abc.abstractmethod
    def status(self, amphora_id: str) -> str:
        """One of BUILDING, ACTIVE, DELETED, ERROR."""

    def create_server_group(self, load_balancer_id: str) -> str | None:
        """A group that keeps a pair's amphorae apart (anti-affinity), found again when it
        exists; None when the driver (or its configuration) has none."""
        return None

    def delete_server_group(self, load_balancer_id: str) -> None:
        """Remove the load balancer's group; fine when there is none."""
        return None

    def controller_address(self) -> str:
        """The address this driver's amphorae reach the controller at (where their
        heartbeats go unless ``[health_manager]`` says otherwise)."""
        return "127.0.0.1"

    def release_host(self) -> None:
        """None of this deployment's amphorae is left: give back what the driver holds
        on this host for them (the netns driver's management bridge)."""
        return None  # most drivers hold nothing on the host

    def list_instances(self) -> list[Instance]:
        """This deployment's amphora instances that the driver can see (for the orphan
        sweep and for noticing dead ones early); drivers that cannot list say nothing."""
        return []

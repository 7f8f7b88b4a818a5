"""RestAmphoraDriver's HAProxy step against a recording stand-in for the agent client:
it leaves alone only a configuration HAProxy runs, not one that is merely installed (a
worker killed between the upload and the reload left it so, and the old one serving)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from amphorae.contract import model
from amphorae.drivers.agent_client import AgentInfo
from amphorae.drivers.amphora.base import AmphoraRef, TLSFiles, VipSubnet
from amphorae.drivers.amphora.rest import RestAmphoraDriver


class Agent:
    """Holds an installed and a running config as the agent would; records the calls."""

    def __init__(self) -> None:
        self.installed: str | None = None
        self.running: str | None = None
        self.calls: list[str] = []

    def info(self) -> AgentInfo:
        return AgentInfo(hostname="amphora", haproxy_version="2.6", api_version="1.0",
                         max_fds=None)

    def running_haproxy_md5(self, lb_id: str) -> str | None:
        self.calls.append("running_haproxy_md5")
        return None if self.running is None else hashlib.md5(self.running.encode()).hexdigest()

    def upload_haproxy_config(self, lb_id: str, text: str) -> str:
        self.calls.append("upload")
        self.installed = text
        return "etag"

    def reload(self, lb_id: str) -> dict[str, Any]:
        self.calls.append("reload")
        self.running = self.installed
        return {}


BALANCER = model.LoadBalancer(
    id="lb", project_id="p", vips=("198.18.104.10",),
    listeners=(model.Listener(id="li", protocol="HTTP", protocol_port=80),))


AMPHORA = AmphoraRef("amp", "STANDALONE", "198.18.98.2")
VIP_SUBNET = VipSubnet(24, None)


def driver_for(agent: Agent) -> RestAmphoraDriver:
    client: Any = agent
    return RestAmphoraDriver(lambda amp: client, lambda amp: Path("/nonexistent"))


def step(agent: Agent) -> None:
    driver = driver_for(agent)
    plan = driver._plan(agent, AMPHORA, BALANCER, None, VIP_SUBNET)  # type: ignore[arg-type]
    driver._haproxy(agent, "lb", plan.haproxy)  # type: ignore[arg-type]


def test_a_new_config_is_uploaded_and_reloaded_then_left_alone() -> None:
    agent = Agent()
    step(agent)
    assert agent.calls == ["running_haproxy_md5", "upload", "reload"]
    agent.calls.clear()
    step(agent)
    assert agent.calls == ["running_haproxy_md5"]


def test_a_config_installed_but_not_loaded_is_reloaded() -> None:
    agent = Agent()
    step(agent)
    agent.running = "the configuration before the last upload"
    agent.calls.clear()
    step(agent)
    assert agent.calls == ["running_haproxy_md5", "upload", "reload"]
    assert agent.running == agent.installed


def test_drift_is_what_runs_differently_from_the_rendered_config() -> None:
    agent = Agent()
    driver = driver_for(agent)
    assert driver.drifted(AMPHORA, BALANCER, TLSFiles(), None, VIP_SUBNET) == ["haproxy"]
    step(agent)
    assert driver.drifted(AMPHORA, BALANCER, TLSFiles(), None, VIP_SUBNET) == []
    agent.running = "someone restarted HAProxy with an old file"
    assert driver.drifted(AMPHORA, BALANCER, TLSFiles(), None, VIP_SUBNET) == ["haproxy"]

"""RestAmphoraDriver's UDP step against a recording stand-in for the agent client: the
UDP part of the model goes to /1.0/udp only when the agent holds another one, a refusal
is a ConfigRefused, and a load balancer without UDP listeners loses its rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amphorae.contract import model, udp_config
from amphorae.drivers import agent_client
from amphorae.drivers.amphora.base import ConfigRefused
from amphorae.drivers.amphora.rest import RestAmphoraDriver


class Agent:
    """Holds a UDP document and rules as the agent would; records the calls."""

    def __init__(self, document: str | None = None, refuse: bool = False) -> None:
        self.document = document
        self.rules: str | None = "rules" if document else None
        self.refuse = refuse
        self.calls: list[str] = []

    def get_udp_config(self) -> str | None:
        self.calls.append("get_udp_config")
        return self.document

    def upload_udp_config(self, document: str) -> str:
        self.calls.append("upload_udp_config")
        if self.refuse:
            raise agent_client.AgentRequestError(400, "Invalid request", "nft says no")
        self.document, self.rules = document, "rules"
        return "etag"

    def get_nftables(self) -> str | None:
        self.calls.append("get_nftables")
        return self.rules

    def delete_nftables(self) -> None:
        self.calls.append("delete_nftables")
        self.document = self.rules = None


def lb(*protocols: str) -> model.LoadBalancer:
    pool = model.Pool(id="pool", protocol="UDP", lb_algorithm="ROUND_ROBIN",
                      members=(model.Member("m1", "198.18.105.21", 5300),))
    listeners = tuple(model.Listener(id=f"li-{i}", protocol=protocol, protocol_port=53 + i,
                                     default_pool_id="pool" if protocol == "UDP" else None)
                      for i, protocol in enumerate(protocols))
    return model.LoadBalancer(id="lb", project_id="p", vips=("198.18.104.10",),
                              listeners=listeners, pools=(pool,))


def step(agent: Agent, balancer: model.LoadBalancer) -> None:
    """The driver's UDP step (apply() also does certificates, HAProxy and VRRP)."""
    client: Any = agent
    driver = RestAmphoraDriver(lambda amp: client, lambda amp: Path("/nonexistent"))
    has_udp = any(li.protocol == "UDP" for li in balancer.listeners)
    driver._nftables(client, udp_config.render(balancer) if has_udp else None)


def test_upload_only_when_the_agent_holds_another_document() -> None:
    agent = Agent()
    step(agent, lb("UDP", "HTTP"))
    assert agent.calls == ["get_udp_config", "upload_udp_config"]
    assert agent.document == udp_config.render(lb("UDP", "HTTP"))
    agent.calls.clear()
    step(agent, lb("UDP", "HTTP"))
    assert agent.calls == ["get_udp_config"]  # unchanged: member health is kept


def test_refused_document_is_config_refused() -> None:
    with pytest.raises(ConfigRefused, match="UDP listeners refused: nft says no"):
        step(Agent(refuse=True), lb("UDP"))


def test_no_udp_listener_left_removes_rules_and_checks() -> None:
    agent = Agent(document=udp_config.render(lb("UDP")))
    step(agent, lb("HTTP"))
    assert agent.calls == ["get_nftables", "delete_nftables"]
    agent.calls.clear()
    step(agent, lb("HTTP"))
    assert agent.calls == ["get_nftables"]

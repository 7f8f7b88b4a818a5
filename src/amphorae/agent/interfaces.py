"""This amphora's interfaces: Octavia's ``GET /1.0/interface/{ip}`` and
``POST /1.0/plug/vip/{vip}``.

The controller asks each amphora of a pair for the VIP to learn which one keepalived made
MASTER (and that one has: a pair is reported ACTIVE once its VIP carries traffic).

A SINGLE amphora in a VM has nobody else to put the VIP on its VIP-network interface
(keepalived does it only for pairs; on a netns host the network driver does): the
controller plugs it, naming the amphora's own address on that network (``vrrp_ip``,
which the interface got from Neutron) or the port's MAC, and the subnet.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from typing import Any

from amphorae.agent import wsgi
from amphorae.agent.wsgi import AgentError, Request, Response

IP = shutil.which("ip") or "/usr/sbin/ip"


def holding(address: str) -> str | None:
    """The name of the interface that holds ``address`` now, or None."""
    wanted = ipaddress.ip_address(address)
    listed = subprocess.run([IP, "-json", "address", "show"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
    for link in json.loads(listed or "[]"):
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) == wanted:
                return str(link["ifname"])
    return None


class Interface:
    def on_get(self, req: Request, resp: Response, address: str) -> None:
        try:
            name = holding(address)
        except ValueError:
            raise AgentError(400, "Invalid IP address",
                             f"{address!r} is not an IP address") from None
        if name is None:
            raise AgentError(404, "Error interface not found for IP address",
                             address)
        resp.media = {"message": "OK", "interface": name}


def with_mac(mac: str) -> str | None:
    """The name of the interface with this MAC address, or None."""
    listed = subprocess.run([IP, "-json", "link", "show"], capture_output=True, text=True,
                            timeout=10, check=True).stdout
    return next((str(link["ifname"]) for link in json.loads(listed or "[]")
                 if str(link.get("address", "")).lower() == mac.lower()), None)


class PlugVip:
    def on_post(self, req: Request, resp: Response, vip: str) -> None:
        address = _address("vip", vip)
        data = _json_object(req.body)
        try:
            subnet = ipaddress.ip_network(str(data.get("subnet_cidr")), strict=False)
        except ValueError:
            raise AgentError(400, "Invalid subnet_cidr",
                             f"subnet_cidr {data.get('subnet_cidr')!r} is not a CIDR") from None
        if address not in subnet:
            raise AgentError(400, "Invalid VIP",
                             f"{vip} is not in subnet_cidr {subnet}")
        mac, vrrp_ip = data.get("mac_address"), data.get("vrrp_ip")
        if mac:
            ifname = with_mac(str(mac))
        elif vrrp_ip:
            ifname = holding(str(_address("vrrp_ip", str(vrrp_ip))))
        else:
            raise AgentError(400, "Invalid request",
                             "mac_address or vrrp_ip must name the interface")
        if ifname is None:
            raise AgentError(404, "No suitable network interface found",
                             f"no interface with mac_address {mac}" if mac
                             else f"no interface holds vrrp_ip {vrrp_ip}")
        subprocess.run([IP, "address", "replace", f"{address}/{subnet.prefixlen}", "dev",
                        ifname], capture_output=True, text=True, timeout=10, check=True)
        resp.status = 202
        resp.media = {"message": "OK", "details": f"VIP {vip} plugged on interface {ifname}"}


def _address(field: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise AgentError(400, f"Invalid {field}",
                         f"{field} {text!r} is not an IP address") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AgentError(400, "Invalid request", "the body must be a JSON object")
    return data


def add_routes(app: wsgi.App, prefix: str) -> None:
    app.add_route(f"{prefix}/interface/{{address}}", Interface())
    app.add_route(f"{prefix}/plug/vip/{{vip}}", PlugVip())

"""Which interface of this amphora holds an address: Octavia's ``GET /1.0/interface/{ip}``.

The controller asks each amphora of a pair for the VIP to learn which one keepalived made
MASTER (and that one has: a pair is reported ACTIVE once its VIP carries traffic).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

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


def add_routes(app: wsgi.App, prefix: str) -> None:
    app.add_route(f"{prefix}/interface/{{address}}", Interface())

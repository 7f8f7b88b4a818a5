"""The name an amphora's HAProxy goes by in the peers section of an ACTIVE_STANDBY pair:
the agent starts HAProxy with it (``-L``), the controller renders every amphora's."""

from __future__ import annotations

import base64
import hashlib


def peer_name(amphora_id: str) -> str:
    """Octavia's local peer name (-L): base64 of sha1(amphora id), URL alphabet, no '='
    and no leading '-' (HAProxy would read it as an option)."""
    digest = hashlib.sha1(amphora_id.encode()).digest()  # a name, not a security check
    name = base64.b64encode(digest, altchars=b"_-").decode().rstrip("=")
    return "x" + name[1:] if name.startswith("-") else name

"""An instance's files: from config drive personality (``injected_files``) or from
cloud-init user data ``write_files``, written under the instance's root directory.

``/etc/octavia/amphora-agent.conf`` among them makes the instance an amphora: its
absolute paths under ``/etc/octavia`` are moved under the root, so the same file a VM
would get serves the agent in a namespace. ``/var/lib/octavia`` (the agent's base path,
which the controller also writes into HAProxy's configuration) stays as it is: the
driver mounts the instance's own directory there, in the agent's mount namespace.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
import re
from collections.abc import Iterable
from pathlib import Path

AGENT_CONF = "/etc/octavia/amphora-agent.conf"
MAPPED = "/etc/octavia"  # moved under the root in the agent's configuration
BASE_PATH = "/var/lib/octavia"  # mounted from <root>/var/lib/octavia
_PATH_VALUE = re.compile(r"^(\s*\w+\s*=\s*)(/\S*)\s*$", re.MULTILINE)


def from_injected(injected: Iterable[tuple[str, bytes | str]] | None) -> dict[str, bytes]:
    return {path: data.encode() if isinstance(data, str) else bytes(data)
            for path, data in injected or ()}


def from_user_data(user_data: str | None) -> dict[str, bytes]:
    """``write_files`` of a ``#cloud-config`` document (Nova keeps user data base64)."""
    if not user_data:
        return {}
    try:
        text = base64.b64decode(user_data).decode()
    except (binascii.Error, UnicodeDecodeError):
        return {}
    if not text.startswith("#cloud-config"):
        return {}
    import yaml  # venv-nova has it (oslo); not needed for personality files

    doc = yaml.safe_load(text) or {}
    files = {}
    for entry in doc.get("write_files") or ():
        content = entry.get("content", "")
        data = content.encode() if isinstance(content, str) else bytes(content)
        encoding = str(entry.get("encoding", "")).lower()
        if "b64" in encoding or "base64" in encoding:
            data = base64.b64decode(data)
        if "gz" in encoding or "gzip" in encoding:
            data = gzip.decompress(data)
        files[entry["path"]] = data
    return files


def under(root: Path, path: str) -> Path:
    """``path`` (absolute, as in a VM) inside ``root``; refuses to leave it."""
    target = (root / path.lstrip("/")).resolve()
    if root.resolve() not in target.parents:
        raise ValueError(f"file path {path!r} leaves the instance root")
    return target


def map_paths(text: str, root: Path) -> str:
    """Values that are paths a VM's agent owns, moved under ``root``."""
    def repl(match: re.Match[str]) -> str:
        value = match.group(2)
        if value.startswith(MAPPED):
            return match.group(1) + str(under(root, value))
        return match.group(0)
    return _PATH_VALUE.sub(repl, text)


def write(root: Path, files: dict[str, bytes]) -> Path | None:
    """Write ``files`` under ``root`` (0600, as the amphora image's files are). Returns
    the agent's configuration file when there is one, with its paths mapped."""
    conf = None
    for path, data in files.items():
        target = under(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path == AGENT_CONF:
            data = map_paths(data.decode(), root).encode()
            conf = target
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    if conf is not None:
        under(root, BASE_PATH).mkdir(parents=True, exist_ok=True)
    return conf


def agent_port(conf_text: str, default: int = 9443) -> int:
    match = re.search(r"^\s*bind_port\s*=\s*(\d+)\s*$", conf_text, re.MULTILINE)
    return int(match.group(1)) if match else default

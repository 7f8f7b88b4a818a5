"""The amphora's nftables rule set for UDP listeners (contract.nftables), applied by the agent.

Layout under the agent's base path::

    <base>/nftables.d/rules.nft       the last script nft applied
    <base>/nftables.d/rules.nft.new   while checked and applied (.failed when refused)

(".d": no load balancer id has a dot, so no load balancer operation reaches the folder.)

The script replaces its table in one transaction, so applying is ``nft -c -f`` (a dry run
in the kernel: syntax and semantics) and then ``nft -f``. Forwarding is switched on in the
agent's network namespace first: DNATed packets must be forwarded to the members.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from amphorae.agent import haproxy as hap
from amphorae.agent.errors import ToolError
from amphorae.contract import nftables as nft_rules

LOG = logging.getLogger(__name__)

# Per network namespace; the agent runs in the amphora's.
_FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")


class NftError(ToolError):
    """nft refused or failed; ``details`` is its output."""


@dataclass(frozen=True)
class NftFiles:
    root: Path

    @property
    def rules(self) -> Path:
        return self.root / "rules.nft"

    @property
    def new_rules(self) -> Path:
        return self.root / "rules.nft.new"

    @property
    def failed_rules(self) -> Path:
        return self.root / "rules.nft.failed"


def default_command() -> str:
    return shutil.which("nft") or "/usr/sbin/nft"


class Nftables:
    """Applies and removes the rule set. Thread-safe: one lock around every change."""

    def __init__(self, base_path: str | os.PathLike[str], nft_cmd: str | None = None, *,
                 forwarding: bool = True) -> None:
        self.files = NftFiles(Path(base_path) / "nftables.d")
        self.cmd = nft_cmd or default_command()
        self.forwarding = forwarding  # False: leave the namespace's sysctls alone (tests)
        self._lock = threading.Lock()

    def _nft(self, *args: str, script: bytes | None = None) -> None:
        proc = subprocess.run([self.cmd, *args], input=script, capture_output=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            raise NftError("Invalid request", output)

    def apply(self, script: bytes) -> None:
        """Check, then apply ``script``; on failure the rules in force stay as they were
        (nft applies a file all or nothing) and the refused script is kept as .failed."""
        files = self.files
        with self._lock:
            files.root.mkdir(parents=True, mode=0o700, exist_ok=True)
            hap.write_file(files.new_rules, script, 0o600)
            try:
                self._nft("-c", "-f", os.fspath(files.new_rules))
                if self.forwarding:
                    _enable_forwarding()
                self._nft("-f", os.fspath(files.new_rules))
            except NftError:
                os.replace(files.new_rules, files.failed_rules)
                raise
            os.replace(files.new_rules, files.rules)

    def applied(self) -> bytes | None:
        try:
            return self.files.rules.read_bytes()
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        """Remove the table; absent already is fine ("add" first makes "delete" safe)."""
        table = nft_rules.TABLE
        with self._lock:
            self._nft("-f", "-", script=f"add table {table}\ndelete table {table}\n".encode())
            self.files.rules.unlink(missing_ok=True)


def _enable_forwarding() -> None:
    for path in _FORWARDING:
        try:
            if Path(path).read_text().strip() != "1":
                Path(path).write_text("1\n")
        except OSError as exc:  # IPv6 disabled, or no permission outside an amphora
            LOG.warning("cannot enable forwarding (%s): %s", path, exc)

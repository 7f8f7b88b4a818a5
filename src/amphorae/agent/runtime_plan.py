"""Which change of haproxy.cfg a running HAProxy can take through its runtime API.

:func:`plan` compares the config HAProxy runs with the new one. When the two differ only
in members (servers added, removed, re-weighted, enabled or disabled) and in the global
``maxconn`` (which follows the member count when the descriptor limit binds), it returns
the runtime commands, grouped per server as :class:`Action`; anything else is structural
and it returns None: the caller reloads. Pure: text in, commands out.

A removed or disabled server drains: ``set server … state drain`` at once (no new
connections; HAProxy still sends it persistent ones, i.e. sticky clients), and the
action's ``then`` commands (maintenance, cut what is left, delete) once its sessions are
gone or its drain timeout (the backend's ``# amphorae drain-timeout`` line, else the
global ``hard-stop-after``: what a reload gives an old worker's connections) has passed.

HAProxy 2.6 limits (management guide, "add server"/"del server"), each a reload here:
- ``add server`` needs a dynamic algorithm (roundrobin, leastconn, first, random); Octavia's
  SOURCE_IP and our SOURCE_IP_PORT are map-based hashes (``balance source``/``hash``),
  static: adding, removing and re-weighting there reload (state changes do not).
- only a subset of server keywords can be given to ``add server``: not ``cookie``
  (HTTP_COOKIE persistence); TLS to members (``ssl``, ``crt``, ``ca-file``) is refused
  here because a dynamic server's certificate files must already be loaded; quoted words
  are refused too; so are servers of a backend with an external (PING) check.
- a server whose address, port, check settings, backup flag or slow start changed.
- dynamic servers do not take ``default-server`` settings; the renderer writes none.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from amphorae.contract import pool_tags

ADD, ENABLE, WEIGHT, DISABLE, REMOVE, MAXCONN = (
    "add", "enable", "weight", "disable", "remove", "maxconn")
# Order of application: capacity comes before it goes, so a pool that swaps members
# always has one to send to.
ORDER = (MAXCONN, ADD, ENABLE, WEIGHT, DISABLE, REMOVE)
DYNAMIC_BALANCE = frozenset({"roundrobin", "leastconn", "first", "random"})
# Keywords the renderer may put on a server line that ``add server`` accepts, with the
# number of words each takes after it. Anything else makes a new server structural.
ADDABLE = {
    "check": 0, "check-ssl": 0, "backup": 0, "send-proxy": 0, "send-proxy-v2": 0,
    "send-proxy-v2-ssl-cn": 0, "verify": 1, "check-alpn": 1, "inter": 1, "fall": 1,
    "rise": 1, "addr": 1, "port": 1, "slowstart": 1,
}
_DRAIN = re.compile(re.escape(pool_tags.DRAIN_COMMENT) + r" (\d+)s$")
_TIME = re.compile(r"^(\d+)(us|ms|s|m|h|d)?$")
_UNITS = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
          "d": 86400.0}


@dataclasses.dataclass(frozen=True)
class Action:
    """What one server (or, for MAXCONN, the process) needs.

    ``now`` runs at once; ``then``, when set, runs after the server drained: no session
    left on it, or ``drain_timeout`` seconds (None: no limit) passed.
    """

    kind: str
    backend: str
    server: str
    now: tuple[str, ...]
    then: tuple[str, ...] = ()
    drain_timeout: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.backend, self.server)


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    address: str
    weight: int
    disabled: bool
    options: tuple[str, ...]  # every other word, in order

    @classmethod
    def parse(cls, line: str) -> Server:
        words = line.split()
        if len(words) < 3:
            raise ValueError(f"server line without an address: {line!r}")
        weight, disabled, options = 1, False, []
        rest = iter(words[3:])
        for word in rest:
            if word == "weight":
                weight = int(next(rest, "1"))
            elif word == "disabled":
                disabled = True
            else:
                options.append(word)
        return cls(words[1], words[2], weight, disabled, tuple(options))

    def addable(self) -> bool:
        """Whether ``add server`` can create it with the same settings."""
        words = iter(self.options)
        for word in words:
            if word not in ADDABLE:
                return False
            for _ in range(ADDABLE[word]):
                argument = next(words, None)
                if argument is None or "'" in argument or '"' in argument:
                    return False
        return True


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    lines: tuple[str, ...]  # everything but servers and the drain line
    servers: dict[str, Server]
    drain_timeout: float | None

    @classmethod
    def parse(cls, name: str, body: Iterable[str], default_drain: float | None) -> Backend:
        lines, servers, drain = [], {}, default_drain
        for line in body:
            if line.split(None, 1)[0] == "server":
                server = Server.parse(line)
                servers[server.name] = server
            elif match := _DRAIN.match(line):
                drain = float(match.group(1))
            else:
                lines.append(line)
        return cls(name, tuple(lines), servers, drain)

    @property
    def dynamic(self) -> bool:
        """Whether its algorithm takes servers added, removed and re-weighted at runtime."""
        balance = next((line.split() for line in self.lines if line.startswith("balance ")),
                       ["balance", "roundrobin"])
        return len(balance) > 1 and balance[1] in DYNAMIC_BALANCE

    @property
    def external_check(self) -> bool:
        return "option external-check" in self.lines


def sections(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Top-level lines (section headers, comments) each with the indented lines under it,
    stripped; blank lines dropped."""
    found: list[tuple[str, list[str]]] = [("", [])]
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if raw[:1].isspace():
            found[-1][1].append(line)
        else:
            found.append((line, []))
    return [(header, tuple(body)) for header, body in found]


def plan(old_text: str, new_text: str) -> list[Action] | None:
    """The runtime actions that turn a HAProxy running ``old_text`` into one running
    ``new_text``, in the order to apply them; None when only a reload can."""
    old, new = sections(old_text), sections(new_text)
    if [header for header, _ in old] != [header for header, _ in new]:
        return None
    default_drain = _hard_stop_after(new)
    actions: list[Action] = []
    for (header, before), (_, after) in zip(old, new, strict=True):
        if before == after:
            continue
        kind, _, name = header.partition(" ")
        if kind == "global":
            change = _global(before, after)
        elif kind == "backend":
            change = _backend(Backend.parse(name, before, default_drain),
                              Backend.parse(name, after, default_drain))
        else:
            change = None
        if change is None:
            return None
        actions += change
    return sorted(actions, key=lambda action: ORDER.index(action.kind))


def _global(before: tuple[str, ...], after: tuple[str, ...]) -> list[Action] | None:
    def split(body: tuple[str, ...]) -> tuple[list[str], list[str]]:
        return ([line for line in body if not line.startswith("maxconn ")],
                [line for line in body if line.startswith("maxconn ")])

    (rest_before, _), (rest_after, maxconn) = split(before), split(after)
    if rest_before != rest_after or len(maxconn) != 1:
        return None
    value = maxconn[0].split()[1]
    # HAProxy caps a raise at the value it started with (which is the safe side).
    return [Action(MAXCONN, "", "", (f"set maxconn global {int(value)}",))]


def _backend(old: Backend, new: Backend) -> list[Action] | None:
    if old.lines != new.lines:
        return None
    actions = []
    for name, server in new.servers.items():
        previous = old.servers.get(name)
        if previous is None:
            if not (new.dynamic and server.addable() and not new.external_check):
                return None
            actions.append(_add(new.name, server))
            continue
        if (previous.address, previous.options) != (server.address, server.options):
            return None
        if previous.weight != server.weight:
            if not new.dynamic:
                return None
            actions.append(Action(WEIGHT, new.name, name,
                                  (f"set server {new.name}/{name} weight {server.weight}",)))
        if previous.disabled and not server.disabled:
            actions.append(Action(ENABLE, new.name, name,
                                  (f"set server {new.name}/{name} state ready",)))
        elif server.disabled and not previous.disabled:
            actions.append(Action(DISABLE, new.name, name,
                                  (f"set server {new.name}/{name} state drain",),
                                  _stop(new.name, name), new.drain_timeout))
    for name, previous in old.servers.items():
        if name not in new.servers:
            if not new.dynamic:
                return None
            target = f"{new.name}/{name}"
            # A disabled server is in maintenance already: no drain to start, but one
            # still under way (it was disabled a moment ago) goes on.
            now = () if previous.disabled else (f"set server {target} state drain",)
            actions.append(Action(REMOVE, new.name, name, now,
                                  (*_stop(new.name, name), f"del server {target}"),
                                  new.drain_timeout))
    return actions


def _add(backend: str, server: Server) -> Action:
    """A dynamic server starts in maintenance with its checks off."""
    target = f"{backend}/{server.name}"
    words = ["add server", target, server.address, "weight", str(server.weight),
             *server.options]
    now = [" ".join(words)]
    if "check" in server.options:
        now.append(f"enable health {target}")
    if not server.disabled:
        now.append(f"set server {target} state ready")
    return Action(ADD, backend, server.name, tuple(now))


def _stop(backend: str, server: str) -> tuple[str, ...]:
    """The end of a drain: no traffic, and the sessions still there are cut."""
    target = f"{backend}/{server}"
    return (f"set server {target} state maint", f"shutdown sessions server {target}")


def _hard_stop_after(parsed: list[tuple[str, tuple[str, ...]]]) -> float | None:
    for header, body in parsed:
        if header == "global":
            for line in body:
                words = line.split()
                if words[0] == "hard-stop-after" and len(words) > 1:
                    return parse_time(words[1])
    return None


def parse_time(value: str) -> float:
    """An HAProxy time (milliseconds unless a unit follows) in seconds."""
    match = _TIME.match(value)
    if not match:
        raise ValueError(f"not an HAProxy time: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]

"""The agent's options and the reader of its configuration file.

The options are declared here once as plain values. The controller's sample file gets
them as oslo.config options (:func:`list_opts`); the agent itself reads its INI file with
:func:`load`, without oslo.config: that library and what it pulls in cost every amphora
about 9 MiB of memory and 75 ms of its boot, for a file the controller writes. Only what
the agent reads is read: ``[amphora_agent]``, three ``[health_manager]`` options of the
controller's (the heartbeat's key, targets and interval) and ``[DEFAULT]`` debug and
log_format. As with oslo.config, a later file overrides an earlier one, ``[DEFAULT]``
values do not leak into groups and unknown options are ignored.
"""

from __future__ import annotations

import configparser
import dataclasses
import glob
import os
import types
from collections.abc import Sequence
from typing import Any

GROUP = "amphora_agent"
HEALTH_GROUP = "health_manager"
DEFAULT_GROUP = "DEFAULT"


class ConfigError(ValueError):
    """A configuration file that cannot be read or holds an invalid value."""


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: str  # str, host, port, int, list, bool, choice
    default: Any = None
    help: str = ""
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False

    def parse(self, group: str, text: str) -> Any:
        """The value of ``text`` as this option's type; ConfigError names the option."""
        text = text.strip()
        try:
            return _PARSERS[self.kind](self, text)
        except ValueError as exc:
            raise ConfigError(f"[{group}] {self.name} = {text!r}: {exc}") from None


def _int(opt: Option, text: str) -> int:
    value = int(text)
    if opt.min is not None and value < opt.min:
        raise ValueError(f"below the minimum {opt.min}")
    if opt.max is not None and value > opt.max:
        raise ValueError(f"above the maximum {opt.max}")
    return value


def _port(opt: Option, text: str) -> int:
    return _int(dataclasses.replace(opt, min=0, max=65535), text)


def _host(_opt: Option, text: str) -> str:
    # oslo.config's HostAddressOpt: an IP address or a host name.
    if not text or any(c.isspace() for c in text) or "/" in text:
        raise ValueError("not an address or host name")
    return text


def _bool(_opt: Option, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "on", "yes"):
        return True
    if lowered in ("false", "0", "off", "no"):
        return False
    raise ValueError("not a boolean")


def _choice(opt: Option, text: str) -> str:
    if text not in opt.choices:
        raise ValueError(f"not one of {', '.join(opt.choices)}")
    return text


_PARSERS = {
    "str": lambda _opt, text: text,
    "host": _host,
    "port": _port,
    "int": _int,
    "bool": _bool,
    "choice": _choice,
    "list": lambda _opt, text: [item.strip() for item in text.split(",") if item.strip()],
}

agent_opts = [
    Option("amphora_id", "str", help="Id of this amphora (the CN of its server certificate)."),
    Option("bind_host", "host", "::", "Address the agent API listens on."),
    Option("bind_port", "port", 9443, "Port the agent API listens on."),
    Option("agent_server_cert", "str", "/etc/octavia/certs/server.pem",
           "PEM file holding the agent's certificate and its key."),
    Option("agent_server_ca", "str", "/etc/octavia/certs/client_ca.pem",
           "CA a controller's client certificate must be signed by."),
    Option("base_path", "str", "/var/lib/octavia",
           "State directory: one folder per load balancer (config, pid, sockets, "
           "certificates)."),
    Option("haproxy_cmd", "str", "/usr/sbin/haproxy", "The HAProxy binary."),
    Option("agent_request_read_timeout", "int", 180,
           "Seconds a connection may stay silent before the agent drops it."),
    Option("haproxy_stop_timeout", "int", 10,
           "Seconds a soft stop may take before HAProxy is terminated."),
    Option("haproxy_start_timeout", "int", 10,
           "Seconds to wait for HAProxy's first worker (or a reloaded one)."),
    Option("user_log_facility", "int", 0, "Syslog facility local<N> of HAProxy's traffic "
           "logs.", min=0, max=7),
    Option("administrative_log_facility", "int", 1, "Syslog facility local<N> of HAProxy's "
           "own events, at level notice.", min=0, max=7),
]

# What the agent reads of the controller's options (amphorae.common.config declares them
# for the controller and the sample file; these carry the same names, types and defaults).
health_opts = [
    Option("heartbeat_key", "str", secret=True),
    Option("controller_ip_port_list", "list", []),
    Option("heartbeat_interval", "int", 1),
]
default_opts = [
    Option("debug", "bool", False),
    Option("log_format", "choice", "text", choices=("text", "json")),
]
READ = {GROUP: agent_opts, HEALTH_GROUP: health_opts, DEFAULT_GROUP: default_opts}


def list_opts() -> list[tuple[str, list[Any]]]:
    """The agent's group as oslo.config options, for the sample configuration file."""
    from oslo_config import cfg  # the controller's side only

    kinds = {"str": cfg.StrOpt, "host": cfg.HostAddressOpt, "port": cfg.PortOpt,
             "int": cfg.IntOpt}

    def oslo(opt: Option) -> cfg.Opt:
        extra = {"min": opt.min, "max": opt.max} if opt.kind == "int" else {}
        return kinds[opt.kind](opt.name, default=opt.default, help=opt.help, **extra)

    return [(GROUP, [oslo(opt) for opt in agent_opts])]


def config_files(config_args: Sequence[str]) -> list[str]:
    """The files named by ``--config-file=PATH`` / ``--config-dir=DIR`` arguments, in
    order (a directory's ``*.conf`` sorted by name), as oslo.config reads them."""
    files = []
    for arg in config_args:
        flag, _, path = arg.partition("=")
        if flag == "--config-file":
            files.append(path)
        elif flag == "--config-dir":
            if not os.path.isdir(path):
                raise ConfigError(f"config directory {path} not found")
            files += sorted(glob.glob(os.path.join(glob.escape(path), "*.conf")))
        else:
            raise ConfigError(f"not a configuration argument: {arg}")
    return files


def load(files: Sequence[str]) -> types.SimpleNamespace:
    """The configuration: ``conf.amphora_agent.bind_port``, ``conf.health_manager...``,
    ``conf.debug``, ``conf.log_format``; defaults where no file sets a value."""
    values: dict[str, dict[str, Any]] = {
        group: {opt.name: opt.default for opt in opts} for group, opts in READ.items()}
    for path in files:
        # No [DEFAULT] inheritance and no interpolation: oslo.config has neither.
        parser = configparser.RawConfigParser(default_section="\0", strict=False)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        for group, opts in READ.items():
            if parser.has_section(group):
                section = parser[group]
                for opt in opts:
                    if opt.name in section:
                        values[group][opt.name] = opt.parse(group, section[opt.name])
    conf = types.SimpleNamespace(**{group: types.SimpleNamespace(**found)
                                    for group, found in values.items()
                                    if group != DEFAULT_GROUP})
    conf.__dict__.update(values[DEFAULT_GROUP])
    return conf

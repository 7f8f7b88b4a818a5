"""The `amphorae` command: `up`, `api`, `worker`, `health`, `housekeeping`, `agent`,
`db upgrade|current`, `config sample`, `policy sample`."""

from __future__ import annotations

import argparse
import sys

from amphorae.common import config

COMMANDS = ("api", "up", "worker", "health", "housekeeping", "agent", "db", "config",
            "policy")


def _setup_logging() -> None:
    from amphorae.common import logs

    logs.setup(debug=config.CONF.debug, log_format=config.CONF.log_format)


def _api(_args: argparse.Namespace) -> int:
    from amphorae.api import server
    from amphorae.db import engine, migrate

    if config.database_url().startswith("sqlite"):
        migrate.upgrade()
        engine.dispose()
    server.serve()
    return 0


def _up(args: argparse.Namespace) -> int:
    from amphorae import services

    return services.up(args.config_args)


def _worker(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.worker()


def _health(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.health()


def _housekeeping(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.housekeeping()


def _agent(_args: argparse.Namespace) -> int:
    from amphorae.agent import server

    return server.main(config.CONF)


def _db(args: argparse.Namespace) -> int:
    from amphorae.db import migrate

    if args.action == "upgrade":
        migrate.upgrade(revision=args.revision)
    else:
        migrate.current()
    return 0


def sample_opts() -> list[tuple[str, list]]:
    """Every option group of every service, for the sample configuration file."""
    from oslo_policy import opts as policy_opts

    from amphorae.agent import options as agent_options
    from amphorae.api import keystone
    from amphorae.drivers.compute import netns

    return [*config.list_opts(), *keystone.list_opts(), *policy_opts.list_opts(),
            *netns.list_opts(), *agent_options.list_opts()]


def _config(args: argparse.Namespace) -> int:
    from amphorae.common import sample_config

    sys.stdout.write(sample_config.render(sample_opts()))
    return 0


def _policy(_args: argparse.Namespace) -> int:
    from amphorae.api import policy

    sys.stdout.write(policy.sample())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="amphorae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the Octavia v2 API")
    sub.add_parser("up", help="run the all-in-one service on the embedded default")
    sub.add_parser("worker", help="run a controller worker (several may share PostgreSQL)")
    sub.add_parser("health", help="run the health manager (heartbeats, failover)")
    sub.add_parser("housekeeping", help="run the housekeeping sweeps")
    sub.add_parser("agent", help="run the amphora agent (needs --config-file)")
    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "current"])
    db.add_argument("revision", nargs="?", default="head")
    cfg_p = sub.add_parser("config", help="configuration")
    cfg_p.add_argument("action", choices=["sample"])
    pol_p = sub.add_parser("policy", help="authorization rules")
    pol_p.add_argument("action", choices=["sample"], help="print the default rules as YAML")
    # oslo.config owns --config-file/--config-dir; argparse gets the rest.
    ours, oslo_args = _split(argv)
    args = parser.parse_args(ours)
    args.config_args = oslo_args
    if args.command == "agent":
        from amphorae.agent import options  # the agent registers its own group

        options.register(config.CONF)
    config.load(oslo_args)
    _setup_logging()
    handler = {"api": _api, "up": _up, "worker": _worker, "health": _health,
               "housekeeping": _housekeeping, "agent": _agent, "db": _db,
               "config": _config, "policy": _policy}[args.command]
    return handler(args)


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    ours: list[str] = []
    oslo: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config-file", "--config-dir"):
            oslo += argv[i:i + 2]
            i += 2
            continue
        if arg.startswith(("--config-file=", "--config-dir=")):
            oslo.append(arg)
        else:
            ours.append(arg)
        i += 1
    return ours, oslo


if __name__ == "__main__":
    sys.exit(main())

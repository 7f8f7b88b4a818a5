"""The `amphorae` command: the control-plane services (`up`, `api`, `worker`, `health`,
`housekeeping`), the amphora `agent`, and the operator's tools (`status`, `db upgrade`,
`db current`, `config sample`, `policy sample`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EPILOG = ("Every command takes --config-file/--config-dir (oslo.config; none: the "
          "embedded defaults) and --debug. `amphorae COMMAND --help` describes one.")


def _setup_logging() -> None:
    from amphorae.common import config, logs

    logs.setup(debug=config.CONF.debug, log_format=config.CONF.log_format)


# -- the commands -------------------------------------------------------------------------

def _api(_args: argparse.Namespace) -> int:
    from amphorae.api import server
    from amphorae.common import config
    from amphorae.db import engine, migrate

    if config.database_url().startswith("sqlite"):
        migrate.upgrade()
        engine.dispose()
    server.serve()
    return 0


def _up(args: argparse.Namespace) -> int:
    from amphorae import services

    return services.up(_config_args(args))


def _worker(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.worker()


def _health(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.health()


def _housekeeping(_args: argparse.Namespace) -> int:
    from amphorae import services

    return services.housekeeping()


def _agent(args: argparse.Namespace) -> int:
    # The agent reads its own configuration: oslo.config is not loaded in an amphora.
    from amphorae.agent import main as agent

    return agent.main(args.config_args, debug=args.debug)


def _status(args: argparse.Namespace) -> int:
    from amphorae import services

    return services.status(args.format)


def _db_upgrade(args: argparse.Namespace) -> int:
    from amphorae.db import migrate

    migrate.upgrade(revision=args.revision)
    return 0


def _db_current(_args: argparse.Namespace) -> int:
    from amphorae.db import migrate

    migrate.current()
    return 0


def sample_opts() -> list[tuple[str, list]]:
    """Every option group of every service, for the sample configuration file."""
    from oslo_policy import opts as policy_opts

    from amphorae.agent import options as agent_options
    from amphorae.api import keystone
    from amphorae.common import config
    from amphorae.drivers import cloud
    from amphorae.drivers.compute import netns, nova

    return [*config.list_opts(), *keystone.list_opts(), *policy_opts.list_opts(),
            *netns.list_opts(), *cloud.list_opts(), *nova.list_opts(),
            *agent_options.list_opts()]


def _config_sample(_args: argparse.Namespace) -> int:
    from amphorae.common import sample_config

    sys.stdout.write(sample_config.render(sample_opts()))
    return 0


def _policy_sample(_args: argparse.Namespace) -> int:
    from amphorae.api import policy

    sys.stdout.write(policy.sample())
    return 0


# -- the command line ---------------------------------------------------------------------

class _ConfigArg(argparse.Action):
    """--config-file/--config-dir are kept in the order given (a later file overrides an
    earlier one) for oslo.config, which reads them itself."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        namespace.config_args = [*namespace.config_args, f"{option_string}={values}"]


def _common() -> argparse.ArgumentParser:
    """The options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument(
        "--config-file", metavar="PATH", action=_ConfigArg, dest="config_args", default=[],
        help="an INI file in Octavia's option groups (`amphorae config sample` lists "
             "them); may be repeated, later files override earlier ones. None: the "
             "embedded defaults (SQLite and state in /var/lib/amphorae or "
             "$AMPHORAE_STATE_PATH, noauth, netns amphorae)")
    group.add_argument(
        "--config-dir", metavar="DIR", action=_ConfigArg, dest="config_args", default=[],
        help="a directory whose *.conf files are read in sorted order, after the "
             "files named before it")
    group.add_argument("--debug", action="store_true",
                       help="log at DEBUG level (as [DEFAULT] debug = true)")
    return common


Handler = Callable[[argparse.Namespace], int]
# Services: they leave through _leave once stopped.
LONG_RUNNING = frozenset({"up", "api", "worker", "health", "housekeeping"})
# name: (one-line help, description, handler); ACTIONS: (help, such a dict) per command.
SERVICES: dict[str, tuple[str, str, Handler]] = {
    "up": ("run everything in one process on the embedded default",
           "The API (a gunicorn child process), a controller worker, the health manager "
           "and housekeeping, with the database upgraded first on SQLite. SIGINT or "
           "SIGTERM stops it within a second or two; amphorae keep serving and the next "
           "start adopts them.", _up),
    "api": ("serve the Octavia v2 API",
            "gunicorn with threaded workers on [api_settings] bind_host:bind_port "
            "(api_workers processes). On SQLite the schema is upgraded first.", _api),
    "worker": ("run a controller worker",
               "Claims jobs from the database queue and reconciles load balancers. Several "
               "workers may share a PostgreSQL database (run `amphorae db upgrade` first).",
               _worker),
    "health": ("run the health manager",
               "Receives the amphorae's UDP heartbeats on [health_manager] "
               "bind_ip:bind_port, writes operating statuses and statistics, fails over "
               "amphorae silent for heartbeat_timeout seconds.", _health),
    "housekeeping": ("run the housekeeping sweeps",
                     "Every [house_keeping] cleanup_interval seconds: re-enqueues load "
                     "balancers stuck in PENDING_* without a job, removes amphorae no row "
                     "claims, purges old DELETED rows.", _housekeeping),
    "agent": ("run the amphora agent (inside an amphora)",
              "The agent's REST API over mutual TLS and its heartbeat sender; its options "
              "are in [amphora_agent] of the file given with --config-file.", _agent),
}
ACTIONS: dict[str, tuple[str, dict[str, tuple[str, str, Handler]]]] = {
    "db": ("database schema", {
        "upgrade": ("apply the schema migrations",
                    "Applies the Alembic migrations to [database] connection, up to "
                    "revision (default: head). Run it before starting services on "
                    "PostgreSQL or MariaDB; on SQLite the services do it themselves.",
                    _db_upgrade),
        "current": ("print the schema revision of the database",
                    "Prints the Alembic revision [database] connection is at.",
                    _db_current),
    }),
    "config": ("configuration", {
        "sample": ("print every option with its help and default",
                   "Prints a sample configuration file: every option of every group, "
                   "commented out at its default (etc/amphorae.conf.sample is this "
                   "output).", _config_sample),
    }),
    "policy": ("authorization rules", {
        "sample": ("print the default policy rules as YAML",
                   "Prints Octavia's default rules as a policy.yaml to start an override "
                   "from ([oslo_policy] policy_file).", _policy_sample),
    }),
}
STATUS = ("show what runs and what the database holds",
          "Reads the database the configuration points at (no API call needed): whether "
          "the API answers on its bind address, which workers hold job leases, when the "
          "health manager last wrote a heartbeat, load balancers by provisioning and "
          "operating status, amphorae by role and status (and how many have a stale "
          "heartbeat), the job queue. What the database does not record is shown as "
          "unknown.")


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="amphorae", description=__doc__, epilog=EPILOG)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def leaf(where: argparse._SubParsersAction, name: str, short: str, long: str,
             handler: Handler) -> argparse.ArgumentParser:
        p = where.add_parser(name, help=short, description=long, parents=[common])
        p.set_defaults(handler=handler)
        return p

    for name, (short, long, handler) in SERVICES.items():
        leaf(sub, name, short, long, handler)
    status = leaf(sub, "status", *STATUS, _status)
    status.add_argument("--format", choices=["text", "json"], default="text",
                        help="plain aligned text (default) or one JSON document")
    for name, (short, actions) in ACTIONS.items():
        group = sub.add_parser(name, help=short, description=short.capitalize() + ".",
                               epilog=EPILOG)
        verbs = group.add_subparsers(dest="action", required=True, metavar="ACTION")
        for verb, (v_short, v_long, handler) in actions.items():
            p = leaf(verbs, verb, v_short, v_long, handler)
            if (name, verb) == ("db", "upgrade"):
                p.add_argument("revision", nargs="?", default="head",
                               help="the revision to upgrade to (default: head)")
    return top


def _config_args(args: argparse.Namespace) -> list[str]:
    """The configuration part of the command line, for a child process."""
    return [*args.config_args, *(["--debug"] if args.debug else [])]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "agent":
        return _agent(args)
    from amphorae.common import config

    try:
        config.load(args.config_args)
    except config.ConfigError as exc:
        print(f"amphorae: {exc}", file=sys.stderr)
        return 2
    if args.debug:
        config.CONF.set_override("debug", True)
    _setup_logging()
    if args.command not in LONG_RUNNING:
        return int(args.handler(args))
    try:
        code = args.handler(args)
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
    if not isinstance(code, int):  # as Python's own exit: None is 0, a message is 1
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    _leave(code)


def _leave(code: int) -> NoReturn:
    """A service that stopped cleanly has closed and joined all it started: leave
    without the interpreter's teardown of every loaded module, which adds a second of
    CPU to the stop and releases nothing the exit does not."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())

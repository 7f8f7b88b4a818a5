"""`amphorae agent`'s start: read the configuration, set up logging, run the server.

The command line is parsed by amphorae.cli; from there on nothing of the controller is
imported (no oslo.config, no cryptography), which keeps an amphora's boot short and its
memory small.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from amphorae.agent import options
from amphorae.common import logs


def main(config_args: Sequence[str], debug: bool = False) -> int:
    """``config_args``: ``--config-file=PATH`` / ``--config-dir=DIR`` in command-line
    order."""
    try:
        conf = options.load(options.config_files(config_args))
    except options.ConfigError as exc:
        print(f"amphorae: {exc}", file=sys.stderr)
        return 2
    logs.setup(debug=debug or conf.debug, log_format=conf.log_format)
    from amphorae.agent import server  # after the configuration: its errors come first

    return server.main(conf)

"""The no-op compute driver (``compute_noop_driver``), as Octavia has it: every amphora
builds at once, with a made-up compute id and management address; nothing runs."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from amphorae.drivers.compute import base

LOG = logging.getLogger(__name__)
MANAGEMENT_IP = "192.0.2.1"  # TEST-NET-1: documentation only, never routed here


class NoopComputeDriver(base.ComputeDriver):
    def build(self, amphora_id: str, server_group_id: str | None = None) -> base.Instance:
        LOG.debug("noop compute: build %s", amphora_id)
        return base.Instance(amphora_id, str(uuid.uuid5(uuid.NAMESPACE_OID, amphora_id)),
                             base.ACTIVE, MANAGEMENT_IP, dt.datetime(2100, 1, 1))

    def delete(self, amphora_id: str) -> None:
        LOG.debug("noop compute: delete %s", amphora_id)

    def status(self, amphora_id: str) -> str:
        return base.ACTIVE

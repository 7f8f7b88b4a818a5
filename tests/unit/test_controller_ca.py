"""Service processes that start together (two workers, the API) make one controller CA
between them: each uses the CA on disk, so every agent certificate one signs passes the
check of the others."""

from __future__ import annotations

import multiprocessing
import pathlib

from amphorae.common import pki
from amphorae.drivers.compute.amphora_boot import CONTROLLER_CERT, AmphoraBooter

PROCESSES = 6


def _ca_of_one_process(folder: str, start: multiprocessing.synchronize.Barrier,
                       out: multiprocessing.Queue) -> None:
    booter = AmphoraBooter(None, folder)  # type: ignore[arg-type]  # the CA needs no host
    start.wait()
    out.put(booter.ca.cert_pem())


def test_processes_starting_together_share_one_ca(tmp_path: pathlib.Path) -> None:
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(PROCESSES), context.Queue()
    procs = [context.Process(target=_ca_of_one_process, args=(str(tmp_path), start, out))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    seen = {out.get(timeout=60) for _ in procs}
    for proc in procs:
        proc.join(30)
    on_disk = pki.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert seen == {on_disk.cert_pem()}
    client = pki.load(tmp_path / CONTROLLER_CERT)
    assert client.cert.issuer == on_disk.cert.subject

"""The amphora image: how long scripts/amphora-image takes (cached, agent layer only,
and cold when asked), how big it is, and how long a VM from it takes until its agent
answers over TLS (qemu on a test bridge, tests/amphora_vm.py). Root.

    .venv/bin/python -m bench.amphora_image [--cold] [--boots 2]

``--cold`` rebuilds both layers with an empty package cache (debootstrap downloads
everything again from deb.debian.org); without it the base layer is built only when
not cached yet. The baseline is the first build of this design on this machine type
(TCG: no KVM here), printed next to each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests import amphora_vm
from tests.dataplane import new_id

# Seconds (size in MiB) measured by the previous build of this design, same machine type.
BASELINE = {"cold": 218.0, "cached": 1.0, "boot": 25.7, "size": 177.0}
CIDR = "198.18.123.0/24"  # free besides the image test's 198.18.120-122


def _timed(force: bool = False) -> tuple[float, Path]:
    started = time.perf_counter()
    path = amphora_vm.image(force=force)
    return time.perf_counter() - started, path


def _line(what: str, value: float, unit: str, key: str) -> None:
    print(f"  {what:<38} {value:8.1f} {unit:<4} baseline {BASELINE[key]:.1f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true",
                        help="rebuild everything, downloading every package again")
    parser.add_argument("--boots", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.amphora_image: needs root (image build, tap, qemu)")
    print("amphora image (scripts/amphora-image), "
          f"qemu {'KVM' if amphora_vm.kvm_usable() else 'TCG'}")
    if args.cold:
        cache = Path(os.environ.get("AMPHORAE_IMAGE_CACHE")
                     or Path.home() / ".cache/amphorae/image")
        shutil.rmtree(cache / "debs", ignore_errors=True)
        seconds, path = _timed(force=True)
        _line("cold build (download, debootstrap)", seconds, "s", "cold")
    else:
        seconds, path = _timed()
    # The agent layer alone, as after a change to the agent's code.
    shutil.rmtree(path.parent)
    seconds, path = _timed()
    print(f"  {'agent layer rebuild':<38} {seconds:8.1f} s")
    seconds, path = _timed()
    _line("cached (nothing to build)", seconds, "s", "cached")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                     capture_output=True, text=True, check=True).stdout)
    _line("image size (compressed qcow2)", path.stat().st_size / 2**20, "MiB", "size")
    print(f"  {'virtual disk size':<38} {info['virtual-size'] / 2**20:8.1f} MiB")
    boots = []
    for _ in range(args.boots):
        work = Path(tempfile.mkdtemp(prefix="amph-bench-vm-"))
        try:
            with amphora_vm.booted(secrets.token_hex(3), CIDR, path, amphora_id=new_id(),
                                   workdir=work) as vm:
                boots.append(vm.wait_agent())
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _line(f"qemu start to agent ready (median of {len(boots)})",
          statistics.median(boots), "s", "boot")
    print(f"  {'each boot':<38} " + ", ".join(f"{b:.1f}" for b in boots) + " s")


if __name__ == "__main__":
    main()

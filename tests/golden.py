"""Golden files: rendered text compared exactly with tests/unit/golden/<area>/<name>.

Set AMPHORAE_REGEN_GOLDEN=1 to rewrite the files from the current output (then review
the diff before committing it).
"""

from __future__ import annotations

import os
import pathlib

GOLDEN_DIR = pathlib.Path(__file__).parent / "unit" / "golden"


def check(area: str, name: str, text: str) -> None:
    path = GOLDEN_DIR / area / name
    if os.environ.get("AMPHORAE_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path}; run with AMPHORAE_REGEN_GOLDEN=1"
    expected = path.read_text()
    assert text == expected, f"rendered text differs from {path}"

"""The dashboard's files: everything the page loads is a file the API serves, and the
package data of pyproject.toml installs every one of them."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import amphorae
from amphorae.api import dashboard

ROOT = Path(amphorae.__file__).parent
PYPROJECT = ROOT.parents[1] / "pyproject.toml"
# What names another file: src/href attributes in the page, imports in the modules.
REFERENCES = re.compile(r'(?:src|href)="([^"]+)"|from "\./([^"]+)"')


def referenced(text: str) -> set[str]:
    return {a or b for a, b in REFERENCES.findall(text)}


def test_every_file_the_page_loads_is_served() -> None:
    seen, todo = set(), [dashboard.INDEX]
    while todo:
        name = todo.pop()
        assert name in dashboard.FILES, f"{name} is named but not served"
        seen.add(name)
        todo += referenced(dashboard.FILES[name].read_text()) - seen
    # ...and nothing is served that the page does not load.
    assert seen == set(dashboard.FILES)


def test_the_package_data_installs_the_static_files() -> None:
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"][
        "amphorae"]
    for path in dashboard.FILES.values():
        relative = path.relative_to(ROOT).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), \
            f"{relative} is not in pyproject.toml's package data"

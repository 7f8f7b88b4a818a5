"""The import rules of src/amphorae, read from the source (AST), not from a running process.

Which top-level package may import which is :data:`ALLOWED`: the agent ships inside an
amphora with ``contract`` and ``common`` only, and the control plane is layered so that no
package cycle can form. Every import counts, also one inside a function (it is a real
dependency, only a later one), except those under ``if TYPE_CHECKING:`` (never executed).
A second test refuses any import cycle between modules.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

import amphorae

ROOT = Path(amphorae.__file__).parent
PACKAGE = "amphorae"

# X may import Y (besides itself). cli.py and services.py assemble processes: anything.
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "contract": frozenset({"common"}),
    "render": frozenset({"contract", "common"}),
    "agent": frozenset({"contract", "common"}),
    # The image's first boot runs before the agent, with the standard library alone.
    "image": frozenset(),
    "db": frozenset({"common"}),
    "drivers": frozenset({"db", "render", "contract", "common"}),
    "worker": frozenset({"drivers", "db", "render", "contract", "common"}),
    "health": frozenset({"drivers", "db", "contract", "common"}),
    "housekeeping": frozenset({"drivers", "db", "contract", "common"}),
    "api": frozenset({"drivers", "db", "contract", "common"}),
}
UNRESTRICTED = frozenset({"cli", "services"})


@dataclasses.dataclass(frozen=True)
class Import:
    module: str  # the importer, e.g. amphorae.worker.reconciler
    target: str  # the module it imports
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}: {self.statement}) -> {self.target}"


# -- reading the source ------------------------------------------------------------------

def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package's is its __init__)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node``, at any depth, but none of an ``if TYPE_CHECKING:``
    body (its ``else:`` does run)."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: Iterable[ast.AST] = node.orelse
    else:
        children = ast.iter_child_nodes(node)
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    for child in children:
        yield from _import_nodes(child)


def _resolve(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
             known: Mapping[str, Path], package: str) -> list[str]:
    """The modules of ours that ``node`` loads: ``from a import b`` is module a.b when one
    exists, else the name b of module a."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importer's package up
            anchor = module.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                 for a in node.names]
    ours = []
    for name in names:
        if name != package and not name.startswith(package + "."):
            continue
        while name not in known and "." in name:  # import a.b.c where c is a name
            name = name.rsplit(".", 1)[0]
        if name in known and name != module and name not in ours:
            ours.append(name)
    return ours


def scan(root: Path = ROOT, package: str = PACKAGE) -> list[Import]:
    known = module_names(root, package)
    found = []
    for module, path in known.items():
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        for node in _import_nodes(tree):
            statement = ast.get_source_segment(source, node) or ""
            for target in _resolve(module, path.name == "__init__.py", node, known, package):
                found.append(Import(module, target, node.lineno, " ".join(statement.split())))
    return found


# -- the rules -----------------------------------------------------------------------------

def top_level(module: str) -> str:
    """The top-level package (or module) of a dotted name: amphorae.worker.queue -> worker."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def forbidden(imports: Iterable[Import],
              allowed: Mapping[str, frozenset[str]] = ALLOWED,
              unrestricted: frozenset[str] = UNRESTRICTED) -> list[str]:
    """One line per import across top-level packages that :data:`ALLOWED` does not allow."""
    problems = []
    for imp in imports:
        src, dst = top_level(imp.module), top_level(imp.target)
        if src == dst or src in unrestricted:
            continue
        if src not in allowed:
            problems.append(f"{imp}: package {src!r} has no import rule (add it to ALLOWED)")
        elif dst not in allowed[src]:
            problems.append(f"{imp}: {src} may not import {dst} "
                            f"(allowed: {', '.join(sorted(allowed[src])) or 'nothing'})")
    return problems


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """The import cycles, as one list per strongly connected group of modules: every
    import between two modules of the group (each of them lies on a cycle)."""
    edges: dict[str, list[Import]] = {}
    for imp in imports:
        edges.setdefault(imp.module, []).append(imp)
        edges.setdefault(imp.target, [])
    # Tarjan's algorithm, iterative (no recursion limit on long chains).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            out = edges[node]
            if i < len(out):
                work.append((node, i + 1))
                nxt = out[i].target
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
            if work:  # back in the caller: take the child's low link
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    found = []
    for group in sorted(groups, key=sorted):
        inner = [imp for m in sorted(group) for imp in edges[m] if imp.target in group]
        if inner:  # a single module without a self-import is no cycle
            found.append(inner)
    return found


def _report(groups: list[list[Import]]) -> str:
    lines = []
    for inner in groups:
        members = sorted({imp.module for imp in inner})
        lines.append(f"cycle between {', '.join(members)}:")
        lines += [f"  {imp}" for imp in inner]
    return "\n".join(lines)


# -- the tree ------------------------------------------------------------------------------

@functools.cache
def tree() -> tuple[Import, ...]:
    return tuple(scan())


def test_every_package_has_a_rule() -> None:
    packages = {top_level(m) for m in module_names(ROOT, PACKAGE) if m != PACKAGE}
    assert packages - UNRESTRICTED == set(ALLOWED)


def test_the_rules_form_no_package_cycle() -> None:
    """Since each import follows ALLOWED, no package cycle can exist if ALLOWED has none."""
    rule_imports = [Import(f"{PACKAGE}.{src}", f"{PACKAGE}.{dst}", 0, "rule")
                    for src, dsts in ALLOWED.items() for dst in dsts]
    assert not cycles(rule_imports), _report(cycles(rule_imports))


def test_imports_between_packages_follow_the_rules() -> None:
    problems = forbidden(tree())
    assert not problems, "imports against the rules of tests/unit/test_import_rules.py:\n" + \
        "\n".join(problems)


def test_the_agent_imports_only_the_contract_and_common() -> None:
    """The same rule read the other way: nothing of the agent outside agent/ but cli.py."""
    users = sorted({imp.module for imp in tree() if top_level(imp.target) == "agent"
                    and top_level(imp.module) not in ("agent", "cli")})
    assert not users, f"modules importing the agent: {', '.join(users)}"


def test_no_import_cycle_between_modules() -> None:
    found = cycles(tree())
    assert not found, "import cycles:\n" + _report(found)


# -- the checker itself --------------------------------------------------------------------

def imp(module: str, target: str) -> Import:
    return Import(f"amphorae.{module}", f"amphorae.{target}", 1, f"import {target}")


def test_checker_names_a_forbidden_import() -> None:
    graph = [imp("agent.haproxy", "contract.peers"), imp("agent.udp", "render.nftables"),
             imp("worker.wiring", "health.service"), imp("cli", "agent.server"),
             imp("newpkg.x", "common.config")]
    problems = forbidden(graph)
    assert len(problems) == 3
    assert problems[0].startswith("amphorae.agent.udp (line 1: import render.nftables) "
                                  "-> amphorae.render.nftables: agent may not import render")
    assert "worker may not import health" in problems[1]
    assert "package 'newpkg' has no import rule" in problems[2]


def test_checker_finds_every_cycle() -> None:
    graph = [imp("api.a", "api.b"), imp("api.b", "api.c"), imp("api.c", "api.a"),
             imp("api.c", "common.x"), imp("worker.q", "worker.q"),
             imp("health.s", "worker.q"), imp("worker.w", "health.s")]
    found = cycles(graph)
    assert [sorted(str(i.module) for i in inner) for inner in found] == [
        ["amphorae.api.a", "amphorae.api.b", "amphorae.api.c"], ["amphorae.worker.q"]]
    report = _report(found)
    assert "amphorae.api.c (line 1: import api.a) -> amphorae.api.a" in report
    assert "common.x" not in report
    # worker.w -> health.s alone is no cycle; with the way back it is one more.
    assert len(cycles([*graph, imp("health.s", "worker.w")])) == 3


def test_checker_reads_the_source(tmp_path: Path) -> None:
    """Function-level and relative imports count; ``if TYPE_CHECKING:`` ones do not."""
    pkg = tmp_path / "pkg"
    for folder in ("agent", "render"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "render" / "model.py").write_text("X = 1\n")
    (pkg / "render" / "text.py").write_text("from . import model\n")
    (pkg / "agent" / "late.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.render import text\n"
        "else:\n    import os\n"
        "def f():\n    from ..render.model import X\n    return X\n")
    found = {(i.module, i.target, i.line) for i in scan(pkg, "pkg")}
    assert found == {("pkg.render.text", "pkg.render.model", 1),
                     ("pkg.agent.late", "pkg.render.model", 7)}


@pytest.mark.parametrize("module", ["amphorae.agent.udp_health", "amphorae.worker.reconciler"])
def test_the_scan_sees_real_modules(module: str) -> None:
    """Guards the scan against finding nothing (every rule would then hold trivially)."""
    assert any(i.module == module for i in tree())

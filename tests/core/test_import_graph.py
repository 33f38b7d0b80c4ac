"""The house's rooms: no import cycle inside or between the packages (every import counts: top level, inside
functions and under ``TYPE_CHECKING``), and the packages only import downwards (cli -> bridges -> epg_core)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"epg_core": "epg_core", "epg_bridges": "bridges", "epg_cli": "cli", "epg_bench": "bench"}
#: Which package may import which (the data flow: the core knows no stage; the CLI and the bench sit on top).
ALLOWED = {"epg_core": {"epg_core"}, "epg_bridges": {"epg_core", "epg_bridges"},
           "epg_cli": {"epg_core", "epg_bridges", "epg_cli", "epg_bench"},
           "epg_bench": {"epg_core", "epg_bridges", "epg_cli", "epg_bench"}}  # a bench may drive the CLI as a user does


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's ``__init__`` importing its own submodules is its
    front door, not an edge back)."""
    files = _modules()
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = node.module or ""
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != mod and not (is_pkg and target.startswith(mod + ".")):
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_known_cycle() -> None:
    """The oracle itself can fail: a three-module ring and a self-contained pair are found, a chain is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(map(tuple, cycles(graph))) == [("a", "b", "c"), ("d", "e")]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_packages_import_only_downwards() -> None:
    bad = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                 if t.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert not bad, bad

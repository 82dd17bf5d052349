"""The project's own import graph has no cycle: every import counts, at the top of a module, inside a function or
under TYPE_CHECKING, so a dependency hidden in a function body closes a cycle as surely as one at the top.

No cycle is known since issue 29 put sweeps/ in one-way layers (spec → queue → run → launch): any cycle fails.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "resnet_core", "reports")
KNOWN_CYCLES: list[set[str]] = []  # issue 29 broke the last one (sweeps/ in one-way layers)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names ``node`` imports (``from a import b`` names both ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module → the project's modules it imports anywhere in its body. A package's ``__init__`` that re-exports its
    own submodules is not counted as a dependency of those submodules on it."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(module, is_package, node):
                while name and name not in files:  # a name inside a module: the module
                    name = name.rpartition(".")[0]
                if name and name != module and not (is_package and name.startswith(module + ".")):
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_cycle_finder_sees_a_cycle_closed_inside_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [{"a", "b", "c"}]
    source = "def f():\n    from .b import x\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert _imported("pkg.a", False, node) == ["pkg.b", "pkg.b.x"]


def test_no_import_cycle_but_the_known_ones():
    found = cycles(import_graph())
    known = [c for c in found if any(c <= k for k in KNOWN_CYCLES)]
    for c in known:
        print(f"known import cycle of {len(c)} (issue 29, item 1): {', '.join(sorted(c))}")
    new = [sorted(c) for c in found if c not in known]
    assert not new, f"new import cycle(s): {new}"


LAYERS = ("sweeps.spec", "sweeps.verdicts", "sweeps.queue", "sweeps.run", "sweeps.launch")  # lowest first


def _layer(module: str) -> int | None:
    return next((i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")), None)


def test_sweeps_layers_import_one_way():
    """launch → run → queue → spec (verdicts sits on spec): no module imports a layer above its own, and reports
    read spec, queue and verdicts only."""
    graph = import_graph()
    upward = []
    for module, imported in graph.items():
        own = _layer(module)
        for name in imported:
            other = _layer(name)
            if other is None:
                continue
            if module.startswith("reports") and LAYERS[other] in ("sweeps.run", "sweeps.launch"):
                upward.append(f"{module} → {name}")
            elif own is not None and other > own:
                upward.append(f"{module} → {name}")
    assert not upward, f"imports against the layers: {upward}"

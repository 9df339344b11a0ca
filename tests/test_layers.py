"""The package's import graph: the layers of docs/architecture.md import downward,
and the only cycles run through the deliberate upward imports that it names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "procesos"

#: Made inside the function that needs them, as the standard library's context
#: does (docs/architecture.md, "Deliberate upward imports").
DELIBERATE_UPWARD = {
    ("procesos._proc._context", "procesos._engine._pool"),  # ctx.Pool()
    ("procesos._proc._context", "procesos._sharing._queues"),  # ctx.Queue(), ctx.Pipe(), ...
    ("procesos._proc._context", "procesos._sharing._managers"),  # ctx.Manager()
    ("procesos._engine._executor", "procesos._backends"),  # Executor(backend="dask" | "ray")
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that *path* imports, at any depth, except under
    ``if TYPE_CHECKING:`` (annotations only)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(sub) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
                   for sub in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
                elif target in modules:
                    found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_deliberate_upward_imports_are_still_made() -> None:
    graph = import_graph()
    for lower, upper in DELIBERATE_UPWARD:
        assert upper in graph[lower], f"{lower} no longer imports {upper}: drop it from the list"


def test_no_import_cycle_but_through_the_deliberate_upward_imports() -> None:
    graph = import_graph()
    for lower, upper in DELIBERATE_UPWARD:
        graph[lower].discard(upper)
    assert cycles(graph) == []


def test_the_launch_layer_and_the_process_do_not_import_the_contexts() -> None:
    # The start methods' names and the default one live in _launch/_methods.py.
    graph = import_graph()
    below = [m for m in graph if m.startswith("procesos._launch")] + ["procesos._proc._process"]
    assert [m for m in below if "procesos._proc._context" in graph[m]] == []


def test_the_bottom_modules_import_nothing_of_procesos_above_them() -> None:
    # _compat (every private reach) and _rebuild (what a receiver rebuilds a
    # function with) sit under every layer; the tracker and the tree's module
    # run or load before anything else of procesos.
    graph = import_graph()
    assert graph["procesos._rebuild"] == set()
    assert graph["procesos._compat"] <= {"procesos._rebuild"}
    assert graph["procesos._shm._tree"] == set()
    assert graph["procesos._shm._tracker"] == set()

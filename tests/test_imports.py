"""The package's import graph: the CLI only imports downward, and no two modules import each other (even lazily).

Read from the source with `ast`, so every import counts, also those inside functions (a lazy import is still a
dependency: it only moves the cycle from import time to call time).
"""
from __future__ import annotations

import ast
from pathlib import Path

import rocl_bench

ROOT = Path(rocl_bench.__file__).resolve().parent


def package_modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imports_of(name: str, modules: dict[str, tuple[Path, bool]]) -> set[str]:
    """The package modules `name` imports anywhere in its source (`from X import y` counts X.y when that is a
    module, else X)."""
    path, is_pkg = modules[name]
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if is_pkg and isinstance(node, ast.Attribute) and node.attr == "iter_modules":
            # a package that imports every module in its folder (attacks/) depends on each of them
            out |= {m for m in modules if m.rpartition(".")[0] == name}
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:          # `import rocl_bench.x.y` where y is a name, not a module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {m: imports_of(m, modules) for m in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_correctly() -> None:
    """The reader sees relative, absolute, lazy and `from package import module` imports."""
    graph = import_graph()
    assert "rocl_bench.runtime" in graph["rocl_bench.attacks.evaluate"]          # from ..runtime import ...
    assert "rocl_bench.distributed" in graph["rocl_bench.bench.runner"]          # from .. import distributed
    assert "rocl_bench.bench.runner" in graph["rocl_bench.api"]                  # lazy, inside a function
    assert "rocl_bench.attacks.base" in graph["rocl_bench.attacks.iterative"]
    assert "rocl_bench.attacks.clean" in graph["rocl_bench.attacks"]                # imported by discovery
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_cli_imports_it() -> None:
    offenders = sorted(m for m, deps in import_graph().items()
                       if "rocl_bench.cli" in deps and m != "rocl_bench.__main__")
    assert offenders == [], f"modules importing rocl_bench.cli (the CLI must only import downward): {offenders}"


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []

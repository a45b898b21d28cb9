"""Dependencies inside a subpackage flow one way: its modules' import graph has no cycle.

Every import statement counts, those inside functions too (a cycle hidden in a function-level
import is still a cycle: `heldout.train.fanout` and `heldout.train.procedure` imported each
other that way). Read from the source with `ast`, nothing is imported.
"""

import ast
import os

import heldout

PACKAGE_DIR = os.path.dirname(heldout.__file__)


def module_names(package: str) -> dict[str, str]:
    """Dotted module name -> source path of every module of `package` (``heldout.x``)."""
    top = os.path.join(os.path.dirname(PACKAGE_DIR), *package.split("."))
    out = {}
    for directory, _, files in os.walk(top):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path[:-3], os.path.dirname(PACKAGE_DIR)).split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (``from p import m`` counts as p.m when m
    is a module, else as p)."""
    modules = module_names(package)
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1
                    parent = module.split(".")[:len(module.split(".")) - node.level + is_package]
                    base = ".".join(parent + ([base] if base else []))
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                             for a in node.names)
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_train_imports_flow_one_way():
    graph = import_graph("heldout.train")
    assert {"heldout.train.procedure", "heldout.train.fanout"} <= set(graph)
    assert cycles(graph) == []

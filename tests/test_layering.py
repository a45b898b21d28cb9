"""The package's import graph has no cycle (issue 18): the part `lint-imports` cannot see.

`lint-imports` (the contracts in pyproject.toml, run by .ci/run) checks the layering, and its
``acyclic_siblings`` contract finds every cycle between the children of a package, at every
depth. Any other cycle passes through a package's own ``__init__``: a module imports the
package above it, which imports the module back (Python runs the package's ``__init__``
first, so such a cycle breaks at import or hides in an import inside a function). This test
finds those in grimp's import graph (the one import-linter reads: every import statement,
those inside functions included).
"""

from __future__ import annotations

import grimp

# (module, the package above it that it imports although the package imports it back) -> why.
# An entry is removed with the cycle: the test fails while an entry matches no cycle.
KNOWN: dict[tuple[str, str], str] = {}


def cycles_through_a_package(graph: grimp.ImportGraph, package: str) -> set[tuple[str, str]]:
    """(module, ancestor package) for every import of a package above the module that reaches
    the module back."""
    found = set()
    for module in graph.find_descendants(package):
        for imported in graph.find_modules_directly_imported_by(module):
            if module.startswith(imported + ".") and graph.chain_exists(imported, module):
                found.add((module, imported))
    return found


def test_cycle_through_a_package_is_found():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.sub", "pkg.sub.a", "pkg.sub.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.sub", imported="pkg.sub.a")
    graph.add_import(importer="pkg.sub.a", imported="pkg.sub.b")
    graph.add_import(importer="pkg.c", imported="pkg")  # pkg does not import pkg.c: no cycle
    assert cycles_through_a_package(graph, "pkg") == set()
    graph.add_import(importer="pkg.sub.b", imported="pkg.sub")
    assert cycles_through_a_package(graph, "pkg") == {("pkg.sub.b", "pkg.sub")}


def test_no_module_imports_a_package_above_it_that_imports_it_back():
    graph = grimp.build_graph("heldout", cache_dir=None)
    found = cycles_through_a_package(graph, "heldout")
    assert found - set(KNOWN) == set(), f"import cycles through a package: {found - set(KNOWN)}"
    assert set(KNOWN) - found == set(), f"gone, remove from KNOWN: {set(KNOWN) - found}"

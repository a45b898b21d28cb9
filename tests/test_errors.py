"""Every exception in heldout.errors (issue 18), and messages that name parameters, not flags.

Both checks read the package's source with `ast` (nothing is imported, no TensorFlow).
"""

from __future__ import annotations

import ast
import pathlib

import heldout.errors

PACKAGE = pathlib.Path(heldout.errors.__file__).parent


def _modules(skip: tuple[str, ...] = ()):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] not in skip:
            yield relative, ast.parse(path.read_text(), str(path))


def _exception_classes(tree: ast.Module) -> list[str]:
    """Top-level classes whose bases name an exception (``...Error``, ``Exception``, ...)."""
    exceptions = ("Error", "Exception", "Interrupt", "Interrupted")
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)
            and any(ast.unparse(base).endswith(exceptions) for base in node.bases)]


def test_every_public_exception_is_defined_in_errors():
    elsewhere = [f"{relative}: {name}" for relative, tree in _modules()
                 if relative != pathlib.Path("errors.py")
                 for name in _exception_classes(tree) if not name.startswith("_")]
    assert elsewhere == [], f"define these in heldout/errors.py: {elsewhere}"
    defined = _exception_classes(ast.parse(pathlib.Path(heldout.errors.__file__).read_text()))
    assert {"HeldoutError", "NpzError", "LayoutError", "CommandError"} <= set(defined)


def test_errors_imports_nothing_from_heldout():
    tree = ast.parse(pathlib.Path(heldout.errors.__file__).read_text())
    imported = [ast.unparse(n) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("heldout")
                or isinstance(n, ast.Import) and any(a.name.startswith("heldout") for a in n.names)]
    assert imported == []

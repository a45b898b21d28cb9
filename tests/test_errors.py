"""Every exception in heldout.errors (issue 18), and messages that name parameters, not flags.

Both checks read the package's source with `ast` (nothing is imported, no TensorFlow).
"""

from __future__ import annotations

import ast
import functools
import pathlib
import re

import heldout.errors

PACKAGE = pathlib.Path(heldout.errors.__file__).parent


@functools.cache
def _parsed() -> tuple[tuple[pathlib.Path, ast.Module], ...]:
    """(path relative to heldout/, its syntax tree) of every module, parsed once."""
    return tuple((path.relative_to(PACKAGE), ast.parse(path.read_text(), str(path)))
                 for path in sorted(PACKAGE.rglob("*.py")))


def _modules(skip: tuple[str, ...] = ()):
    return [(relative, tree) for relative, tree in _parsed() if relative.parts[0] not in skip]


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
    defined = _exception_classes(dict(_parsed())[pathlib.Path("errors.py")])
    assert {"HeldoutError", "NpzError", "LayoutError", "CommandError"} <= set(defined)


def test_errors_imports_nothing_from_heldout():
    tree = dict(_parsed())[pathlib.Path("errors.py")]
    imported = [ast.unparse(n) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("heldout")
                or isinstance(n, ast.Import) and any(a.name.startswith("heldout") for a in n.names)]
    assert imported == []


# A flag may appear only inside a command line to run, in backticks (```heldout estimate
# --influence full```, ```dask scheduler --scheduler-file```): advice on making an input with
# another command, not the name of an argument of the call that failed.
_COMMAND_LINE = re.compile(r"`(heldout|dask) [^`]*`")
_FLAG = re.compile(r"--[a-z]")


def _text(node: ast.AST) -> str:
    """The literal text of a message expression, ``{}`` for what is formatted into it (with the
    literal text inside, e.g. of a ``", ".join(...)``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(value) for value in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.Call) and _has_text(node.func):
        return "{" + _text(node.func) + "}"
    texts = [_text(child) for child in ast.iter_child_nodes(node) if _has_text(child)]
    return "{" + " ".join(texts) + "}"


def _has_text(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node))


def flags_in_raised_messages(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, message) of each ``raise`` whose message names a command-line flag."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc
            message = (" ".join(_text(a) for a in exc.args) if isinstance(exc, ast.Call)
                       else _text(exc))
            if _FLAG.search(_COMMAND_LINE.sub("", message)):
                found.append((node.lineno, message))
    return found


def test_flags_in_raised_messages_are_found():
    tree = ast.parse('def f(workers, out):\n'
                     '    raise E(f"--workers {workers}: too many")\n'
                     '    raise E("x" + f"{out}" + "; use another --out")\n'
                     '    raise E(f"`workers`={workers}: too many")\n'
                     '    raise E(f"write it with `heldout predict {out} --split train`")\n')
    assert [line for line, _ in flags_in_raised_messages(tree)] == [2, 3]


def test_library_messages_name_parameters_not_flags():
    """Outside heldout/cli/ a message names the Python parameter (```workers`=3``);
    `heldout.cli.common.with_flags` writes the command's flag when the CLI prints it."""
    found = [f"heldout/{relative}:{line}: {message}" for relative, tree in _modules(skip=("cli",))
             for line, message in flags_in_raised_messages(tree)]
    assert found == [], "messages naming CLI flags:\n" + "\n".join(found)

"""Every dotted ``heldout.`` name in the docs resolves, and the docs' maps of the package name
every part of it (issue 18).

The names are read from the module, class and function docstrings of the package, `demo.py`,
`mnist-example/` and `benchmarks/`, and from the whole of README.md and mnist-example/README.md
(prose and code blocks). A name resolves when it is an importable module of the package, or an
attribute of one: a top-level definition, assignment or import, a name of `__all__` (including
the names a module's `__getattr__` makes on first use), a class attribute, method or field.

Nothing is imported: each module is found as a file and read with `ast` (importing the modules
that use TensorFlow takes seconds), so the test costs well under a second.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NAME = re.compile(r"(?<![\w.])heldout(?:\.[A-Za-z_]\w*)+")

# Where the names are read: docstrings of these Python files, and the whole of these pages.
PYTHON_SOURCES = ["heldout", "benchmarks", "mnist-example", "demo.py"]
PAGES = ["README.md", "mnist-example/README.md"]


def python_files() -> list[Path]:
    files: list[Path] = []
    for source in PYTHON_SOURCES:
        path = ROOT / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def doc_names() -> dict[str, list[str]]:
    """Every dotted ``heldout.`` name -> where it is written (``file:line``)."""
    found: dict[str, list[str]] = {}

    def add(text: str, where, first_line: int) -> None:
        for match in NAME.finditer(text):
            line = first_line + text.count("\n", 0, match.start())
            found.setdefault(match.group(0), []).append(f"{where}:{line}")

    for path in python_files():
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    add(doc, where, node.body[0].lineno)
    for page in PAGES:
        add((ROOT / page).read_text(encoding="utf-8"), page, 1)
    return found


def module_file(module: str) -> Path | None:
    """The file of a module of the package (``heldout.x.y``), or None."""
    parts = module.split(".")
    if parts[0] != "heldout":
        return None
    base = ROOT.joinpath(*parts)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


@functools.cache
def module_names(module: str) -> dict[str, object]:
    """The names a module defines at import: name -> its `ast.ClassDef` for a class (followed
    into for its attributes), ``("import", module, name)`` for a name imported from another
    module, or None (anything else: a function, a variable, a name `__getattr__` makes).
    Imports under ``if TYPE_CHECKING:`` are left out: they do not exist at run time."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    names: dict[str, object] = {}
    literals: dict[str, list[str]] = {}
    all_node = None

    def visit(body: list[ast.stmt]) -> None:
        nonlocal all_node
        for node in body:
            if isinstance(node, ast.ClassDef):
                names[node.name] = node
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[node.name] = None
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            names[name.id] = None
                            literals[name.id] = _strings(node.value)
                            if name.id == "__all__":
                                all_node = node.value
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names[alias.asname or alias.name.split(".")[0]] = None
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                for alias in node.names:
                    names[alias.asname or alias.name] = ("import", node.module, alias.name)
            elif isinstance(node, ast.If) and not _type_checking(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody,
                              *(handler.body for handler in node.handlers)):
                    visit(block)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    # `__all__` may list names that the module's `__getattr__` makes (PEP 562), by value or
    # through a starred tuple or dict of them: `__all__ = [..., *_LAZY]`.
    if isinstance(all_node, (ast.List, ast.Tuple)):
        for element in all_node.elts:
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                names.setdefault(element.value, None)
            elif isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
                for name in literals.get(element.value.id, []):
                    names.setdefault(name, None)
    return names


def _strings(value) -> list[str]:
    """The strings of a literal tuple, list or set, or the keys of a literal dict."""
    if isinstance(value, ast.Dict):
        items = value.keys
    elif isinstance(value, (ast.Tuple, ast.List, ast.Set)):
        items = value.elts
    else:
        return []
    return [item.value for item in items
            if isinstance(item, ast.Constant) and isinstance(item.value, str)]


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def class_names(cls: ast.ClassDef) -> dict[str, object]:
    """A class's attributes: its body's definitions and assignments (dataclass fields
    included), and the ``self.x`` its methods assign."""
    names: dict[str, object] = {}
    for node in cls.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = None
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store)
                        and isinstance(inner.value, ast.Name) and inner.value.id == "self"):
                    names.setdefault(inner.attr, None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names[target.id] = None
    return names


def resolves(name: str) -> bool:
    """Whether ``heldout.x.y...`` is a module of the package or an attribute of one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        if module_file(module) is not None:
            return _attribute_resolves(module, parts[i:])
    return False


def _attribute_resolves(module: str, rest: list[str]) -> bool:
    if not rest:
        return True
    names = module_names(module)
    if rest[0] not in names:
        return False
    found = names[rest[0]]
    if isinstance(found, tuple):  # imported: follow it to where it is defined
        _, source, attribute = found
        if not source.startswith("heldout"):
            return True  # another library's name: not ours to check
        return resolves(".".join([source, attribute, *rest[1:]]))
    if isinstance(found, ast.ClassDef):
        return _class_attribute_resolves(module, found, rest[1:])
    return len(rest) == 1


def _class_attribute_resolves(module: str, cls: ast.ClassDef, rest: list[str]) -> bool:
    if not rest:
        return True
    names = class_names(cls)
    if rest[0] in names:
        found = names[rest[0]]
        if isinstance(found, ast.ClassDef):
            return _class_attribute_resolves(module, found, rest[1:])
        return len(rest) == 1
    # Inherited from a base class of the package.
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in module_names(module):
            if _attribute_resolves(module, [base.id, *rest]):
                return True
    return False


def test_resolver_accepts_each_kind_of_name_and_refuses_others():
    # Modules and packages, top-level definitions, assignments and re-exports (followed to
    # where they are defined), names made by `__getattr__`, class methods, fields and nested
    # attributes.
    for name in [
        "heldout", "heldout.data.imagenet", "heldout.release.tar", "heldout.errors.HeldoutError",
        "heldout.release.archives.ARCHIVES", "heldout.data.DatasetSpec.from_args",
        "heldout.estimate.RatioAccumulator", "heldout.open_experiment",
        "heldout.models.SmallInception", "heldout.data.spec.DatasetSpec.train_size",
        "heldout.data.fingerprint.Fingerprint.to_arrays", "heldout.cluster.Dask",
    ]:
        assert resolves(name), name
    for name in [
        "heldout.stacked", "heldout.release.ARCHIVES", "heldout.no_such_module",
        "heldout.data.no_such_name", "heldout.data.DatasetSpec.no_such_field",
        "heldout.release.archives.ARCHIVES.keys", "heldout.models.NoSuchNetwork",
        "heldout.data.TFRecordImageDataset",  # imported under TYPE_CHECKING only
    ]:
        assert not resolves(name), name


def test_doc_names_are_found_in_docstrings_and_pages():
    found = doc_names()
    where = {place.split(":")[0] for places in found.values() for place in places}
    # A module docstring, a function docstring, both pages, a benchmark.
    assert {"heldout/export/__init__.py", "heldout/data/spec.py", "README.md",
            "mnist-example/README.md", "benchmarks/estimate.py"} <= where
    assert "heldout.data.load_dataset" in found


def test_every_dotted_name_in_the_docs_resolves():
    unresolved = {name: places for name, places in doc_names().items() if not resolves(name)}
    assert not unresolved, "names that are no module or attribute of the package:\n" + "\n".join(
        f"  {name}  ({', '.join(places)})" for name, places in sorted(unresolved.items()))


def package_children() -> tuple[list[str], list[str]]:
    """The modules and the subpackages directly under heldout/."""
    package = ROOT / "heldout"
    modules = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("__"))
    subpackages = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    return modules, subpackages


def test_layout_map_and_package_docstring_name_every_part_of_the_package():
    modules, subpackages = package_children()
    assert {"experiment", "errors"} <= set(modules) and {"data", "pytorch"} <= set(subpackages)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = re.search(r"^- Layout of the package.*?(?=^\S|^$)", readme, re.M | re.S).group(0)
    missing = [name for name in modules + subpackages
               if f"`{name}`" not in layout and f"`{name}/`" not in layout]
    assert not missing, f"README.md's layout map leaves out {missing}"
    # ... and every module of a subpackage (`cli/` is described as one module per group).
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "heldout").glob("*/**/*.py"))
               if path.parts[-2] != "cli" and not path.name.startswith("__")
               and f"`{path.stem}`" not in layout]
    assert not missing, f"README.md's layout map leaves out {missing}"
    docstring = ast.get_docstring(ast.parse((ROOT / "heldout/__init__.py").read_text("utf-8")))
    missing = [name for name in subpackages if f"`{name}`" not in docstring]
    assert not missing, f"heldout/__init__.py's docstring leaves out {missing}"

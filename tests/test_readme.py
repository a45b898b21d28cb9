"""Every Python block of README.md and mnist-example/README.md runs, as a reader pastes it after
the README's commands that precede it (issue 19).

A page's Python blocks are grouped by section (their ``## `` heading) and run in order in one
namespace (one Python session per section) in a working directory that stands for the reader's:
it holds ``tests`` (the repository's, so the fixture paths ``tests/data/reference/...`` work as
from the repository root) and whatever the README's own commands write there. A block names
files (its string literals); those that a README command writes (``--out``, ``--out_dir``,
``--output_dir``, ``--save_accumulator``) are made first by running that command as written
(the first one that does not need the release or a download; its own inputs likewise), in this
process, once per test session.

What the test changes, and nothing else:

- ``/tmp/heldout-digits``, the quick start's output, is a directory of the test's
  (`DIGITS`, replaced in blocks and commands);
- the quick start trains 4 runs instead of 400 (run 0 keeps its checkpoint), and
  ``--workers N`` evaluates in the command's own process (``--workers 0``): `COMMANDS`;
- the authors' published score files are tests/data/published's, and TFDS's
  ``cifar10:3.0.2`` is mocked with the published file's labels in a fixed TFDS order, ids
  ``train_<original position>`` (no download): `mocked_tfds`.

A section that needs a command run (training, TensorFlow evaluation) or TFDS is marked slow. A
block that names a file no runnable README command writes fails here: write the command before
it (on the fixtures or the quick start's output), or use the fixture paths.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "mnist-example/README.md")
SHELL_FENCES = ("", "bash", "sh", "shell")
#: The quick start's output directory, a directory of the test's here.
DIGITS = "/tmp/heldout-digits"
#: Changes to the README's commands (pattern, replacement, why).
COMMANDS = (
    (r"--num_runs=400\b", "--num_runs=4", "4 runs, not 400: run 0 keeps its checkpoint"),
    (r"--workers [1-9][0-9]*", "--workers 0", "no Dask cluster: in the command's process"),
)
#: Commands naming any of these need the release, a download or another machine: not run.
UNRUNNABLE = ("cifar10-inception", "cifar100-inception", "imagenet-resnet50", "cifar10:3.0.2",
              "cifar100:3.0.2", "/usr/share/datasets", "ILSVRC2012", "imagenet", "--scheduler",
              "--dataset=mnist", "--dataset mnist", "download", "extract")
OUTPUT_FLAGS = ("--out", "--out_dir", "--output_dir", "--save_accumulator")
#: TFDS datasets mocked when a section names them (`mocked_tfds`).
MOCKED_TFDS = ("cifar10:3.0.2",)
#: Python in a block that needs TensorFlow (the section is then slow).
TENSORFLOW = ("heldout.evaluate", "heldout.train", "import tensorflow", "load_dataset")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    line: int
    section: str
    fence: str
    text: str


@dataclasses.dataclass(frozen=True)
class Command:
    page: str
    line: int
    argv: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def runnable(self) -> bool:
        text = " ".join(self.argv)
        is_ours = self.argv[:1] == ("heldout",) or self.argv[:2] == (
            "python", "mnist-example/mnist_infl_mem.py")
        return is_ours and not any(name in text for name in UNRUNNABLE)


def read_blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page, with the ``## `` section each is in."""
    blocks, section, fence, start, lines = [], "", None, 0, []
    for number, line in enumerate((REPO / page).read_text(encoding="utf-8").splitlines(), 1):
        if fence is None and line.startswith("## "):
            section = line[3:].strip()
        elif fence is None and line.startswith("```"):
            fence, start, lines = line[3:].strip(), number + 1, []
        elif fence is not None and line.startswith("```"):
            blocks.append(Block(page, start, section, fence, "\n".join(lines) + "\n"))
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def read_commands() -> list[Command]:
    """The shell commands of both pages in order: continuations joined, comments dropped,
    split at ``&&``, ``NAME=value`` assignments expanded in what follows them on the page, and
    `COMMANDS` applied."""
    commands = []
    for page in PAGES:
        variables: dict[str, str] = {}
        for block in read_blocks(page):
            if block.fence not in SHELL_FENCES:
                continue
            joined = re.sub(r"\\\n\s*", " ", block.text)
            for offset, line in enumerate(joined.splitlines()):
                line = line.split(" #", 1)[0].strip()
                for part in filter(None, (p.strip() for p in line.split("&&"))):
                    assignment = re.fullmatch(r"([A-Za-z_]\w*)=(\S+)", part)
                    if assignment:
                        variables[assignment[1]] = assignment[2]
                        continue
                    for name, value in variables.items():
                        part = re.sub(rf"\$\{{?{name}\b\}}?", value, part)
                    for pattern, replacement, _ in COMMANDS:
                        part = re.sub(pattern, replacement, part)
                    try:
                        argv = tuple(shlex.split(part))
                    except ValueError as error:
                        raise ValueError(
                            f"{page}:{block.line + offset}: not a shell command ({error}): "
                            f"{part!r}; fence output as ```text") from None
                    commands.append(Command(page, block.line + offset, argv, _outputs(argv)))
    return commands


def _outputs(argv: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for i, token in enumerate(argv):
        flag, _, value = token.partition("=")
        if flag in OUTPUT_FLAGS:
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if value:
                out.append(value.rstrip("/"))
    return tuple(out)


def _under(path: str, output: str) -> bool:
    return path.rstrip("/") == output or path.startswith(output + "/")


def block_literals(text: str) -> set[str]:
    """The string constants of a block (the paths it may name)."""
    return {node.value for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def needed_outputs(blocks: list[Block], commands: list[Command]) -> list[str]:
    """The outputs of runnable README commands that the blocks name."""
    outputs = [o for c in commands if c.runnable for o in c.outputs]
    literals = set().union(*(block_literals(b.text) for b in blocks))
    return [o for o in dict.fromkeys(outputs) if any(_under(lit, o) for lit in literals)]


def sections() -> dict[tuple[str, str], list[Block]]:
    """(page, section) -> its Python blocks, in page order."""
    out: dict[tuple[str, str], list[Block]] = {}
    for page in PAGES:
        for block in read_blocks(page):
            if block.fence == "python":
                out.setdefault((page, block.section), []).append(block)
    return out


def _is_slow(blocks: list[Block], commands: list[Command]) -> bool:
    text = "".join(b.text for b in blocks)
    return bool(needed_outputs(blocks, commands)) or any(
        name in text for name in MOCKED_TFDS + TENSORFLOW)


def _params():
    commands = read_commands()
    return [pytest.param(key, marks=[pytest.mark.slow] if _is_slow(blocks, commands) else [],
                         id=f"{key[0]}::{key[1]}")
            for key, blocks in sections().items()]


# --------------------------------------------------------------------------------------------
# The reader's working directory.


class Workspace:
    """A working directory after the README's commands, made as the blocks need them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.digits = str(root / "heldout-digits")
        self.commands = read_commands()
        self.made: set[str] = set()
        (root / "tests").symlink_to(REPO / "tests", target_is_directory=True)
        for path in (REPO / "tests/data/published").glob("*.np*"):  # the authors' files
            (root / path.name).symlink_to(path)

    def local(self, text: str) -> str:
        """`text` with the quick start's output directory replaced by the test's."""
        return text.replace(DIGITS, self.digits)

    def make(self, output: str, seen: tuple[str, ...] = ()) -> None:
        """Runs the first runnable README command writing `output`, after those writing its
        inputs."""
        if output in self.made:
            return
        writers = [c for c in self.commands if c.runnable and output in c.outputs]
        assert writers, (f"no README command that the test can run writes {output!r} (commands "
                         f"naming {UNRUNNABLE} are not run): write one before the block")
        command = writers[0]
        everything = {o for c in self.commands if c.runnable for o in c.outputs}
        for other in sorted(everything - {output, *seen}):
            if any(_under(token, other) for token in command.argv) and other not in (
                    command.outputs):
                self.make(other, (*seen, output))
        argv = [self.local(token) for token in command.argv]
        with working_directory(self.root):
            status = run_command(argv)
        assert status == 0, f"{command.page}:{command.line}: {' '.join(argv)} exited {status}"
        self.made.add(output)


@contextlib.contextmanager
def working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_command(argv: list[str]) -> int:
    """A README command, in this process: `heldout ...` or the MNIST example."""
    if argv[0] == "heldout":
        from heldout.cli import main

        return main(argv[1:])
    spec = importlib.util.spec_from_file_location(
        "mnist_infl_mem_readme", REPO / "mnist-example" / "mnist_infl_mem.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv[2:])


@contextlib.contextmanager
def mocked_tfds(root: Path, text: str):
    """TFDS's cifar10:3.0.2 train split, when `text` names it: the published C-score file's
    labels in a fixed permutation (TFDS order), with ids ``train_<original position>``."""
    if not any(name in text for name in MOCKED_TFDS):
        yield
        return
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from tfds_helpers import write_metadata

    labels = np.load(REPO / "tests/data/published/cifar10-cscores-orig-order.npz")["labels"]
    order = np.random.default_rng(19).permutation(len(labels))

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, decoders, read_config, shuffle_files
        assert split == "train", split
        return tf.data.Dataset.from_tensor_slices(
            {"id": np.array([f"train_{k}" for k in order]), "label": labels[order]})

    data_dir = str(root / "tfds")
    write_metadata(data_dir, "cifar10:3.0.2", {"train": len(labels), "test": 10000})
    with tfds.testing.mock_data(as_dataset_fn=as_dataset, data_dir=data_dir):
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("reader"))


# --------------------------------------------------------------------------------------------
# What some sections must give, beyond running (checked when they run).


def _check_export(workspace: Workspace, namespace: dict) -> None:
    """The exported digits run, evaluated in PyTorch from its metadata alone, has the
    TensorFlow accuracy (the run's aux arrays)."""
    from heldout.experiment import open_experiment

    run = open_experiment(os.path.join(workspace.digits, "experiment")).runs("0.7")[0]
    assert namespace["accuracy"] == run.load_aux().accuracy("test")
    assert namespace["meta"].input_scaling == "uint8 / 16"


def _check_outputs(workspace: Workspace, namespace: dict) -> None:
    """A run without a checkpoint has its outputs, and the store of the quick start's runs
    covers every one of them (4 here, 1 with a checkpoint), read from their recorded outputs
    (issue 19)."""
    from heldout.experiment import open_experiment

    assert not namespace["run"].has_checkpoint()
    assert len(namespace["outputs"].margin_test) == 500
    runs = open_experiment(os.path.join(workspace.digits, "experiment")).runs()
    store = namespace["store"]
    assert store.run_names == [r.name for r in runs] and len(runs) == 4
    assert store.attrs["source"] == "recorded" and store["recorded"].all()
    assert [r.has_checkpoint() for r in runs] == [True, False, False, False]


CHECKS = {
    ("README.md", "Export and PyTorch"): _check_export,
    ("README.md", "Runs without checkpoints"): _check_outputs,
}


def test_every_check_has_its_section():
    assert set(CHECKS) <= set(sections()), set(CHECKS) - set(sections())


def test_the_pages_have_python_blocks_and_commands():
    found = sections()
    assert sum(len(b) for b in found.values()) >= 8 and ("mnist-example/README.md" in {
        page for page, _ in found})
    writers = {o for c in read_commands() if c.runnable for o in c.outputs}
    assert {"preds.zarr", "test.zarr", "exported", DIGITS} <= writers, writers


@pytest.mark.parametrize("key", _params())
def test_python_blocks_run(key, workspace):
    blocks = sections()[key]
    for output in needed_outputs(blocks, workspace.commands):
        workspace.make(output)
    namespace: dict = {"__name__": "__readme__"}
    text = "".join(b.text for b in blocks)
    with working_directory(workspace.root), mocked_tfds(workspace.root, text):
        for block in blocks:
            code = compile(workspace.local(block.text), f"{block.page}:{block.line}", "exec")
            exec(code, namespace)  # noqa: S102 - the README's own code
    if key in CHECKS:
        CHECKS[key](workspace, namespace)

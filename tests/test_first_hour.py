"""A new user's first hour (issue 13): every mistake answered in one line, readable summaries,
numeric run order, short reprs, every default in --help, no TensorFlow start-up noise.

The script tests run demo.py and the MNIST example in a subprocess that reports whether
TensorFlow was imported: bad flags must be answered before it is.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from heldout import experiment as ex
from heldout.cli import build_parser, main
from heldout.cli.common import HelpFormatter
from heldout.cli.runs import INSPECT_COLUMNS, verify_summary
from heldout.cli.train import refuse_nested_destination

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demo.py")
MNIST = os.path.join(REPO, "mnist-example", "mnist_infl_mem.py")
# Runs a script as __main__, then says on stderr whether TensorFlow was imported.
WRAPPER = """import runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
sys.exit(code)
"""

COMPLETE = [0, 1, 9, 10, 89, 90]  # 0.7: runs with aux arrays (0 also with a checkpoint)
EMPTY = [3, 20, 30, 100, 200]  # 0.7: run directories without aux arrays


def run_script(*argv):
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("tensorflow imported: "), proc.stderr
    return proc.returncode, proc.stdout, "\n".join(lines[:-1]), lines[-1].endswith("True")


def _write_run(path, rng, checkpoint=False, n_train=20, n_test=5):
    path.mkdir(parents=True)
    subset = np.flatnonzero(rng.random(n_train) < 0.7)
    aux = ex.make_aux_arrays(subset, rng.random(n_train) < 0.8, rng.random(n_test) < 0.8)
    ex.write_aux_arrays(path / ex.AUX_ARRAYS, aux)
    if checkpoint:  # found by name only; never restored here
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "ckpt-1.index").write_bytes(b"")
        (path / "checkpoints" / "ckpt-1.data-00000-of-00001").write_bytes(b"")


@pytest.fixture()
def experiment(tmp_path):
    rng = np.random.default_rng(13)
    root = tmp_path / "exp"
    for run_id in COMPLETE:
        _write_run(root / "0.7" / str(run_id), rng, checkpoint=run_id == 0)
    for run_id in EMPTY:
        (root / "0.7" / str(run_id)).mkdir()
    _write_run(root / "0.5" / "4", rng)
    return root


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------------------------
# Directories of the wrong level.


def test_ratio_directory_is_named_with_its_experiment(experiment, tmp_path, fmnist_dir, capsys):
    ratio = experiment / "0.7"
    out = tmp_path / "never.npz"
    for argv in (["inspect", ratio], ["estimate", ratio, "--out", out],
                 ["cscores", ratio, "--out", out],
                 ["verify", ratio, "--dataset_npz", fmnist_dir / "dataset.npz"]):
        status, _, err = cli(capsys, *argv)
        assert status == 2, err
        assert err.strip().splitlines() == [
            f"heldout {argv[0]}: error: {ratio} is a subset-ratio directory; give its "
            f"experiment directory {experiment}"]
    assert not out.exists()


def test_run_directory_is_named_with_its_experiment(experiment, tmp_path, capsys):
    run = experiment / "0.7" / "1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UserWarning
        status, _, err = cli(capsys, "estimate", run, "--out", tmp_path / "e.npz")
    assert status == 2 and err.strip().splitlines() == [
        f"heldout estimate: error: {run} is a run directory; give its experiment directory "
        f"{experiment}"]
    status, _, err = cli(capsys, "inspect", run)
    assert status == 2 and err.strip() == (
        f"heldout inspect: error: {run} is a run; give its experiment directory {experiment}")
    with pytest.raises(ex.LayoutError, match="is a run directory; give its experiment"):
        ex.open_experiment(run)


def test_estimate_reports_skipped_entries_like_the_other_commands(experiment, tmp_path,
                                                                  capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, out, err = cli(capsys, "estimate", experiment, "--ratio", "0.7",
                               "--out", tmp_path / "e.npz")
    assert status == 0, err
    assert err.count("skipped 5 entries of ") == 1 and "UserWarning" not in err
    assert f"{tmp_path / 'e.npz'}: 6 runs at subset ratio 0.7" in out


def test_train_refuses_a_destination_inside_an_experiment(experiment, fmnist_dir, capsys):
    data = fmnist_dir / "dataset.npz"
    run, ratio = experiment / "0.7" / "0", experiment / "0.7"
    for dest, start in ((run, f"{run} is a run directory"), (ratio, f"{ratio} is a subset-ratio"),
                        (run / "deeper", f"{run / 'deeper'} lies inside {run}, a run"),
                        (experiment / "0.8", f"{experiment / '0.8'} is a subset-ratio"),
                        (experiment / "0.7" / "7", f"lies inside {ratio}, a subset-ratio")):
        status, _, err = cli(capsys, "train", dest, "--dataset_npz", data, "--num_runs", "1",
                             "--epochs", "1", "--quiet")
        assert status == 2, err
        assert len(err.strip().splitlines()) == 1 and err.startswith(
            "heldout train: error: ") and start in err, err
        assert f"of the experiment {experiment}; give an experiment directory" in err
    assert not (run / "deeper").exists() and not (run / "0.7").exists()
    assert not (experiment / "0.8").exists()
    assert sorted(os.listdir(ratio), key=int) == [str(i) for i in sorted(COMPLETE + EMPTY)]
    refuse_nested_destination(str(experiment))  # the experiment itself, or a fresh directory
    refuse_nested_destination(str(experiment.parent / "fresh" / "0.7"))


def test_load_dataset_recognises_a_path(fmnist_dir, fmnist_dataset, tmp_path):
    from heldout.data import DatasetError, DatasetSpec, load_dataset, load_labels

    path = str(fmnist_dir / "dataset.npz")
    spec = DatasetSpec(dataset=path)
    assert (spec.dataset, spec.dataset_npz) == (None, path)
    dataset = load_dataset(spec)
    np.testing.assert_array_equal(dataset.images["train"], fmnist_dataset.images["train"])
    np.testing.assert_array_equal(load_labels(spec, split="test"),
                                  fmnist_dataset.split_labels("test"))
    with pytest.raises(DatasetError, match="a directory, not a TFDS dataset name; name it as "
                       "tfrecord_dir"):
        DatasetSpec(dataset=str(tmp_path))
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(DatasetError, match="a file, not a TFDS dataset name; name a .npz "
                       "dataset as dataset_npz"):
        DatasetSpec(dataset=str(tmp_path / "data.bin"))


def test_dataset_spec_names_exactly_one_source_by_keyword(fmnist_dir):
    from heldout.data import Dataset, DatasetError, DatasetSpec, load_dataset

    npz = str(fmnist_dir / "dataset.npz")
    with pytest.raises(TypeError):
        DatasetSpec(npz)  # keyword-only: a positional source was how the copies drifted
    with pytest.raises(DatasetError, match="exactly one of .*found none"):
        DatasetSpec(data_dir="tfds")
    with pytest.raises(DatasetError, match=r"found \['dataset', 'dataset_npz'\]"):
        DatasetSpec(dataset="cifar10:3.0.2", dataset_npz=npz)
    with pytest.raises(DatasetError, match="named by a heldout.data.DatasetSpec"):
        load_dataset(npz)
    cut = load_dataset(DatasetSpec(dataset_npz=npz, train_size=100), ("train",))
    assert cut.num_examples("train") == 100 and isinstance(cut, Dataset)


# --------------------------------------------------------------------------------------------
# Output that summarises.


def test_skipped_entries_in_one_line_in_numeric_order(experiment, capsys):
    status, out, err = cli(capsys, "inspect", experiment)
    assert status == 0, err
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert skipped == [
        f"skipped 5 entries of {experiment} that are not complete runs: 0.7/3 (no "
        "aux_arrays.npz), 0.7/20 (no aux_arrays.npz), 0.7/30 (no aux_arrays.npz) and 2 more "
        "(--verbose lists all)"]
    status, out, err = cli(capsys, "inspect", experiment, "--verbose")
    assert [line.split(": ")[0] for line in err.splitlines() if line.startswith("skipped")] == [
        f"skipped {experiment / '0.7' / str(i)}" for i in EMPTY]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = ex.open_experiment(experiment)
    assert opened.ratios == ["0.5", "0.7"]
    assert [r.run_id for r in opened.runs("0.7")] == COMPLETE
    assert [os.path.basename(s.path) for s in opened.skipped] == [str(i) for i in EMPTY]


def test_inspect_columns_are_aligned(experiment, capsys):
    status, out, _ = cli(capsys, "inspect", experiment)
    lines = out.splitlines()
    header = lines[2]
    assert header.split() == [name for name, _ in INSPECT_COLUMNS]

    def right_edges(line):
        edges, pos = [], 0
        for token in line.split():
            pos = line.index(token, pos) + len(token)
            edges.append(pos)
        return edges

    rows = lines[3:]
    assert [row.split()[0] for row in rows] == ["0.5", "0.7"]
    assert rows[1].split()[1:3] == ["6", "1"]  # six runs, one with a checkpoint
    for row in rows:
        assert right_edges(row) == right_edges(header), (header, row)


def test_verify_summary_counts_failed_runs_apart():
    assert verify_summary(1, 1, 0, 0, 0) == "verified no runs: all 1 failed"
    assert verify_summary(4, 1, 0, 1500, 1500) == (
        "verified 3 runs: 1500 out of 1500 predictions match (1 of 4 runs failed to restore "
        "or read)")
    assert verify_summary(3, 1, 1, 900, 1000) == (
        "verified 2 runs: 900 out of 1000 predictions match (1 of 3 runs failed to restore or "
        "read; 1 of 2 below --min_match_fraction)")
    assert verify_summary(3, 0, 0, 1500, 1500) == (
        "verified 3 runs: 1500 out of 1500 predictions match")


def test_short_reprs(experiment, fmnist_dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = ex.open_experiment(experiment)
    assert repr(opened) == (f"Experiment({str(experiment)!r}, 7 runs by ratio "
                            "{0.5: 1, 0.7: 6}, 5 skipped)")
    assert repr(fmnist_dataset) == (
        f"ArrayDataset({fmnist_dataset.name!r}, 10 classes, test: 500 x 32x32x3 uint8, "
        "train: 2000 x 32x32x3 uint8)")


def _help_strings(parser):
    formatter = parser.formatter_class(prog=parser.prog)
    for action in parser._actions:
        if action.option_strings and action.help is not None and action.dest != "help":
            yield action, formatter._expand_help(action)


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, type(parser._subparsers._group_actions[0])):
            yield from action.choices.items()


def _check_defaults_shown_once(name, parser):
    assert issubclass(parser.formatter_class, HelpFormatter), name
    for action, text in _help_strings(parser):
        count = text.count("default")
        if action.default is None or action.default is False:
            assert count <= 1, (name, action.dest, text)
        else:
            assert count == 1, (name, action.dest, text)
    parser.format_help()  # formats


def test_every_help_shows_every_default_once():
    sys.path.insert(0, REPO)
    try:
        import demo
    finally:
        sys.path.remove(REPO)
    parser = build_parser()
    subparsers = dict(_subparsers(parser))
    assert {"inspect", "verify", "estimate", "cscores", "pairs", "train",
            "build-imagenet"} <= set(subparsers)
    for name, sub in subparsers.items():
        if name in ("download", "extract"):  # no flag with a default
            assert all(a.default in (None, False) for a, _ in _help_strings(sub)
                       if a.dest != "version"), name
            continue
        _check_defaults_shown_once(name, sub)
    _check_defaults_shown_once("demo.py", demo.build_parser())
    train_help = subparsers["train"].format_help()
    for text in ("(default: 10)", "(default: 128)", "(default: 0.1)", "(default: 0.9)"):
        assert train_help.count(text) >= 1, text
    assert "(default: 200)" in subparsers["verify"].format_help()
    assert "(default: 1024)" in subparsers["build-imagenet"].format_help()


def test_tensorflow_startup_lines_are_filtered_real_warnings_kept(capfd):
    from heldout.quiet import filtered_stderr

    with filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n")
        os.write(2, b"I0000 00:00:1796395075.140494   10397 port.cc:153] oneDNN custom "
                    b"operations are on. You may see slightly different numerical results\n")
        os.write(2, b"W0000 00:00:1.0 1 some_op.cc:1] a real warning\n")
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == ["W0000 00:00:1.0 1 some_op.cc:1] a real warning",
                                        "a Python warning"]


# --------------------------------------------------------------------------------------------
# The scripts: mistakes answered before TensorFlow is imported.


@pytest.mark.slow
def test_demo_mistakes_are_one_line_before_tensorflow(experiment, fmnist_dir, tmp_path):
    data = f"--dataset_npz={fmnist_dir / 'dataset.npz'}"
    status, out, err, tf = run_script(DEMO, "-h")
    assert status == 0 and not tf and err == ""
    for flag in ("--run_dir", "--dataset", "--dataset_npz", "--tfrecord_dir", "--idx_dir",
                 "--index_npz", "--data_dir", "--arch", "--split", "--batch_size",
                 "--min_match_fraction"):
        assert flag in out
    assert "(default: 200)" in out and "\\\n" not in out.split("Examples")[0]
    cases = [
        ([f"--run_dir={tmp_path / 'nope'}", data], f"--run_dir {tmp_path / 'nope'}: no such "
         "directory"),
        ([f"--run_dir={experiment}", data], f"--run_dir {experiment} is an experiment "
         f"directory; give one of its runs, e.g. {experiment / '0.5' / '4'}"),
        ([f"--run_dir={experiment / '0.7'}", data], "is a subset-ratio directory; give one of "
         "its runs"),
        ([f"--run_dir={experiment / '0.7' / '1'}", data], "no complete checkpoint in "
         f"{experiment / '0.7' / '1' / 'checkpoints'}"),
    ]
    for argv, message in cases:
        status, out, err, tf = run_script(DEMO, *argv)
        assert status == 2 and not tf, err
        assert len(err.splitlines()) == 1 and err.startswith("demo.py: error: --run_dir "), err
        assert message in err, err
    status, _, err, tf = run_script(DEMO, f"--run_dir={experiment / '0.7' / '0'}")
    assert status == 2 and not tf
    assert err.splitlines()[-1] == ("demo.py: error: one of the arguments --dataset "
                                    "--dataset_npz --tfrecord_dir --idx_dir is required")


@pytest.mark.slow
def test_mnist_script_checks_flags_before_tensorflow_or_writing(tmp_path):
    out = tmp_path / "out"
    for flag, message in (
        ("--idx_dir=/nope", "--idx_dir /nope: no such directory"),
        (f"--idx_dir={tmp_path}", f"--idx_dir {tmp_path}: no train-images-idx3-ubyte[.gz]"),
        ("--subset_ratio=1.5", "--subset_ratio must lie in (0, 1)"),
        ("--epochs=0", "argument --epochs: must be at least 1, got 0"),
        ("--num_runs=1", "--num_runs must be >= 2, got 1"),
        ("--momentum=1", "--momentum must lie in [0, 1)"),
    ):
        status, _, err, tf = run_script(MNIST, flag, f"--output_dir={out}")
        assert status == 2 and not tf, err
        assert err.splitlines()[-1].startswith(f"mnist_infl_mem.py: error: {message}"), err
    assert not out.exists()
    status, help_text, _, tf = run_script(MNIST, "--help")
    assert status == 0 and not tf
    help_text = " ".join(help_text.split())
    assert "(default: 1 on CPU, 128 on a GPU)" in help_text and "(default: None)" not in help_text
    for default in ("2000", "0.7", "10", "128", "0.1", "0.9", "100", "6", "digits"):
        assert f"(default: {default})" in help_text, default


# --------------------------------------------------------------------------------------------
# The READMEs' command lines parse with the real argument parsers.


def _readme_commands(path):
    """The shell commands of a README's ```bash blocks: continuations joined, split at &&."""
    import re

    text = open(path, encoding="utf-8").read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return text, commands


def test_readme_command_lines_parse():
    import importlib.util
    import shlex

    sys.path.insert(0, REPO)
    try:
        import demo
    finally:
        sys.path.remove(REPO)
    spec = importlib.util.spec_from_file_location("mnist_infl_mem_readme", MNIST)
    mnist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mnist)
    parsers = {
        "heldout": build_parser(),
        "python demo.py": demo.build_parser(),
        "python mnist-example/mnist_infl_mem.py": mnist.build_parser(),
    }
    seen = dict.fromkeys(parsers, 0)
    text, commands = _readme_commands(os.path.join(REPO, "README.md"))
    _, more = _readme_commands(os.path.join(REPO, "mnist-example", "README.md"))
    for command in commands + more:
        for prefix, parser in parsers.items():
            if command == prefix or command.startswith(prefix + " "):
                argv = shlex.split(command)[len(prefix.split()):]
                try:
                    parser.parse_args(argv)
                except SystemExit as e:
                    pytest.fail(f"README command does not parse ({e.code}): {command}")
                seen[prefix] += 1
    assert seen["heldout"] >= 10 and seen["python demo.py"] >= 2, seen
    assert seen["python mnist-example/mnist_infl_mem.py"] >= 4, seen
    # The second top command: the tests read tests/data, nothing beside the checkout.
    top = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "they read only tests/data" in top and "../shared" not in text
    assert "bash tests/install-deps.sh && python -m pytest -q" in top
    assert os.path.isfile(os.path.join(REPO, "tests", "install-deps.sh"))
    assert "merge_accumulators" in text and "--checkpoint_every" in text
    for flag in ("--idx_dir", "--tfrecord_dir", "--index_npz", "--dataset_npz", "--data_dir"):
        assert f"`{flag}=" in text, flag

"""One run selector and one run-id parser (issue 18): `heldout.experiment.select_runs` and
`heldout.experiment.parse_run_ids`, and every command that takes ``--run_ids``; what it skipped,
reported in the same words by every command (issue 19: runs without a checkpoint are runs)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from heldout import experiment as ex
from heldout.cli import main as cli_main

COMMANDS_WITH_RUN_IDS = ("train", "predict", "export")


def _argv(command, fmnist_experiment, fmnist_dir, tmp_path, run_ids, *extra):
    data = ["--dataset_npz", str(fmnist_dir / "dataset.npz")]
    if command == "train":
        return ["train", str(tmp_path / "trained"), *data, "--run_ids", run_ids, "--epochs",
                "1", "--quiet", *extra]
    if command == "predict":
        return ["predict", str(fmnist_experiment), *data, "--split", "test", "--out",
                str(tmp_path / "s.zarr"), "--workers", "0", "--run_ids", run_ids, *extra]
    return ["export", str(fmnist_experiment), "--format", "npz", "--out",
            str(tmp_path / "exported"), "--run_ids", run_ids, *extra]


@pytest.mark.parametrize("command", COMMANDS_WITH_RUN_IDS)
def test_backwards_range_is_refused_in_one_line(command, fmnist_experiment, fmnist_dir,
                                                tmp_path, capsys):
    # Before the fix `predict --run_ids 5-3` selected nothing and said "no runs match".
    assert cli_main(_argv(command, fmnist_experiment, fmnist_dir, tmp_path, "5-3")) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"heldout {command}: error: --run_ids: bad run ids '5-3': range 5-3 runs backwards; "
        "expected e.g. 0-499 or 0-9,20,30-39"], err
    assert not os.path.exists(tmp_path / "trained") and not os.path.exists(tmp_path / "s.zarr")


def test_parse_run_ids_keeps_ranges():
    ids = ex.parse_run_ids("7, 0-2,2,3, 10-12")
    assert ids.ranges == ((0, 3), (7, 7), (10, 12))
    assert list(ids) == [0, 1, 2, 3, 7, 10, 11, 12] and len(ids) == 8
    assert 3 in ids and 7 in ids and 5 not in ids and 13 not in ids and -1 not in ids
    assert str(ids) == "0-3,7,10-12"
    huge = ex.parse_run_ids("0-9999999999")
    assert len(huge) == 10**10 and 5 * 10**9 in huge and 10**10 not in huge
    assert huge.ranges == ((0, 9999999999),) and str(huge) == "0-9999999999"
    it = iter(huge)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    assert ex.RunIds.first_n(4) == ex.parse_run_ids("0-3") and len(ex.RunIds.first_n(0)) == 0
    for bad, why in (("", "no run id"), ("a", "not a run id or range"),
                     ("5-3", "range 5-3 runs backwards"), ("1-", "not a run id or range"),
                     ("-1", "not a run id or range"), ("1,,2", "not a run id or range"),
                     ("1" * 19, "more than 18 digits")):
        with pytest.raises(ex.InputError, match=f"^bad run ids {re.escape(repr(bad))}: .*{why}"):
            ex.parse_run_ids(bad)


@pytest.mark.slow
def test_huge_range_answers_with_bounded_memory(fmnist_experiment, fmnist_dir, tmp_path):
    """``--run_ids 0-9999999999`` (a typo for 0-999): ten billion ids, never built. Before the
    fix `train` imported TensorFlow and then built the list (tens of GB) and `predict` a set;
    `export` materialised it through train's parser. The commands run in one child process,
    its address space capped (`resource.setrlimit`) so that a materialised range fails there
    instead of filling the machine; the child reports its peak resident memory (VmHWM: its
    `ru_maxrss` would include this test process's, inherited across fork and exec)."""
    argvs = [
        _argv("train", fmnist_experiment, fmnist_dir, tmp_path, "0-9999999999"),
        # Runs 0, 3 and 7 selected by membership in the range; none has an exported model.
        _argv("predict", fmnist_experiment, fmnist_dir, tmp_path, "0-9999999999",
              "--backend", "torch"),
        _argv("export", fmnist_experiment, fmnist_dir, tmp_path, "0-9999999999", "--ratios",
              "0.9"),
    ]
    code = textwrap.dedent(f"""
        import resource, sys
        limit = 3 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from heldout.cli import main
        for argv in {argvs!r}:
            print("status", main(argv), file=sys.stderr)
        with open("/proc/self/status") as f:
            peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        print("peak_kib", peak, file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in lines if line.startswith("status")] == ["status 2"] * 3, lines
    errors = [line for line in lines if line.startswith("heldout ")]
    assert errors == [
        "heldout train: error: --run_ids: 0-9999999999 selects 10000000000 runs; a command "
        "trains at most 1000000",
        f"heldout predict: error: {fmnist_experiment}: no runs with an exported model "
        "(model.safetensors or model.npz) among the 3 selected; they have a complete "
        "checkpoint: use --backend tensorflow",
        f"heldout export: error: {fmnist_experiment}: no runs match (ratios [0.9], run ids "
        "0-9999999999 (10000000000 ids)); it has ratios ['0.25', '0.5']",
    ], lines
    peak_mib = int(lines[-1].split()[1]) / 1024
    assert peak_mib < 400, peak_mib  # the interpreter, numpy and the CLI: about 70 MiB


def test_select_runs_returns_what_it_skipped(tmp_path, fmnist_experiment):
    """Entries that are not complete runs and runs without the caller's model are returned,
    never warned about or printed; ratios and run ids select."""
    import warnings

    exp = tmp_path / "exp"
    for k in (0, 1, 2, 10):
        (exp / "0.5" / str(k)).mkdir(parents=True)
        source = fmnist_experiment / "0.5" / "0" / "aux_arrays.npz"
        (exp / "0.5" / str(k) / "aux_arrays.npz").write_bytes(source.read_bytes())
    os.symlink(fmnist_experiment / "0.5" / "0" / "checkpoints", exp / "0.5" / "10" / "checkpoints")
    (exp / "0.5" / "11").mkdir()  # no aux arrays
    (exp / "notes.txt").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selection = ex.select_runs(exp, requirement=ex.CHECKPOINT)
        plain = ex.select_runs(exp, run_ids=ex.parse_run_ids("1-10"))
    assert [r.name for r in selection.runs()] == ["0.5/10"] and selection.root == str(exp)
    assert [(os.path.relpath(s.path, exp), s.reason) for s in selection.skipped] == [
        ("0.5/11", "no aux_arrays.npz"), ("notes.txt", "not a subset-ratio directory"),
        ("0.5/0", "no complete checkpoint"), ("0.5/1", "no complete checkpoint"),
        ("0.5/2", "no complete checkpoint")]
    assert [r.name for r in plain.runs()] == ["0.5/1", "0.5/2", "0.5/10"]
    assert len(plain.skipped) == 2
    one = ex.select_runs(exp / "0.5" / "10", requirement=ex.CHECKPOINT)
    assert [r.name for r in one.runs()] == ["0.5/10"] and one.root == str(exp)
    with pytest.raises(ex.NoRunsError, match=r"no runs with a complete checkpoint among the 1 "
                       r"selected") as e:
        ex.select_runs(exp / "0.5" / "1", requirement=ex.CHECKPOINT)
    assert [r.name for r in e.value.lacking] == ["0.5/1"]
    with pytest.raises(ex.NoRunsError, match=r"no runs match \(ratios \[0.7\], run ids all\); "
                       r"it has ratios \['0.5'\]"):
        ex.select_runs(exp, ratios=["0.7"])
    with pytest.raises(ex.LayoutError, match="is a subset-ratio directory"):
        ex.select_runs(exp / "0.5")
    with pytest.raises(ex.LayoutError, match="is a run directory; give its experiment"):
        ex.select_runs(exp / "0.5" / "10", allow_run_dir=False)


# --------------------------------------------------------------------------------------------
# Runs without a checkpoint are runs (issue 19): one wording for every command.


def _experiment(tmp_path, fmnist_experiment):
    """0.5/10 with a checkpoint, 0.5/{0,1,2,3} without, 0.5/11 without aux arrays, a stray
    file and a temporary run directory."""
    exp = tmp_path / "exp"
    for k in (0, 1, 2, 3, 10):
        (exp / "0.5" / str(k)).mkdir(parents=True)
        source = fmnist_experiment / "0.5" / "0" / "aux_arrays.npz"
        (exp / "0.5" / str(k) / "aux_arrays.npz").write_bytes(source.read_bytes())
    os.symlink(fmnist_experiment / "0.5" / "0" / "checkpoints", exp / "0.5" / "10" / "checkpoints")
    (exp / "0.5" / "11").mkdir()
    (exp / "0.5" / ".12.tmp-ab12").mkdir()
    (exp / "notes.txt").write_text("x")
    return exp


def test_runs_without_a_checkpoint_are_called_runs(tmp_path, fmnist_experiment, capsys):
    from heldout.cli.common import select_runs_for_command, skipped_summary

    exp = _experiment(tmp_path, fmnist_experiment)
    selection = ex.select_runs(exp, requirement=ex.CHECKPOINT)
    assert [(os.path.relpath(s.path, exp), s.reason, s.lacking) for s in selection.skipped] == [
        ("0.5/11", "no aux_arrays.npz", None),
        ("0.5/.12.tmp-ab12", "unfinished run (temporary directory)", None),
        ("notes.txt", "not a subset-ratio directory", None),
        *[(f"0.5/{k}", "no complete checkpoint", ex.CHECKPOINT) for k in range(4)]]
    assert skipped_summary(selection) == [
        f"skipped 3 entries of {exp} that are not complete runs: 0.5/11 (no aux_arrays.npz), "
        "0.5/.12.tmp-ab12 (unfinished run (temporary directory)), notes.txt (not a subset-ratio "
        "directory)",
        "skipped 4 runs without a complete checkpoint: 0.5/0, 0.5/1, 0.5/2 and 1 more "
        "(--verbose lists all)"]
    assert skipped_summary(selection, verbose=True)[-1] == (
        f"skipped {exp / '0.5' / '3'}: no complete checkpoint")
    # The same line from every command that selects runs, e.g. verify and predict.
    select_runs_for_command(str(exp), run_ids=ex.parse_run_ids("3,10"), backend="tensorflow")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "skipped 1 run without a complete checkpoint: 0.5/3")
    (exp / "0.5" / "1" / "model.npz").write_bytes(b"")
    select_runs_for_command(str(exp), run_ids=ex.parse_run_ids("0-3"), backend="torch")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "skipped 3 runs without an exported model (model.safetensors or model.npz): 0.5/0, "
        "0.5/2, 0.5/3")


def test_inspect_and_verify_agree_on_runs_without_a_checkpoint(tmp_path, fmnist_experiment,
                                                              fmnist_dir, capsys):
    exp = _experiment(tmp_path, fmnist_experiment)
    for name in ("0.5/11", "0.5/.12.tmp-ab12", "notes.txt"):
        path = exp / name
        path.unlink() if path.is_file() else path.rmdir()
    assert cli_main(["inspect", str(exp)]) == 0
    out, err = capsys.readouterr()
    assert "5 complete runs in 1 subset" in out and "skipped" not in err
    cli_main(["verify", str(exp), "--dataset_npz", str(fmnist_dir / "dataset.npz")])
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "skipped 4 runs without a complete checkpoint: 0.5/0, 0.5/1, 0.5/2 and 1 more "
        "(--verbose lists all)")
    assert "not complete runs" not in err

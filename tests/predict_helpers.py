"""Helpers of the predictions-store tests: experiments that reuse the fixture runs."""

import os
import pathlib
import shutil

import numpy as np

RUNS = ["0.25/3", "0.5/0", "0.5/7"]  # the fixture's runs, in store order (ratio, then id)
REPO = pathlib.Path(__file__).resolve().parents[1]


def reuse_runs(experiment: pathlib.Path, root: pathlib.Path, count: int,
               copy: tuple[int, ...] = ()) -> dict[str, str]:
    """An experiment at `root` with `count` runs, run k of ratio 0.5 being fixture run
    RUNS[k % 3] (symlinked; copied for the ids in `copy`). Returns new name -> fixture name."""
    sources = {}
    for k in range(count):
        source = RUNS[k % len(RUNS)]
        target = root / "0.5" / str(k)
        target.parent.mkdir(parents=True, exist_ok=True)
        if k in copy:
            shutil.copytree(experiment / source, target)
        else:
            os.symlink(experiment / source, target)
        sources[f"0.5/{k}"] = source
    return sources


def error_line(capsys, code: int) -> str:
    """The one line `heldout predict` printed on stderr when it refused its inputs (exit
    status `code`, which must be 2), before any run was evaluated."""
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("heldout predict: error: ")
    assert "FAILED" not in captured.out  # refused before any run was evaluated
    return err


def assert_stores_equal(a, b, atol=1e-5):
    """Two opened stores hold the same runs and arrays (floats within `atol`)."""
    assert a.run_names == b.run_names
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def assert_rows_match(store, reference, sources):
    """Each run of `store` (a reused fixture run) equals that fixture run's row in
    `reference`, a store of the fixture experiment."""
    ref = {name: i for i, name in enumerate(reference.run_names)}
    assert len(store.run_names) == len(sources)
    for i, name in enumerate(store.run_names):
        j = ref[sources[name]]
        for key in ("correct", "prediction", "margin", "logit_confidence", "mask", "epoch"):
            x, y = np.asarray(store[key][i]), np.asarray(reference[key][j])
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0, err_msg=f"{name} {key}")


def write_outputs_store(path, names, masks, labels, correct, index=None, split="train",
                        num_classes=10, **outputs):
    """A completed predictions store made by the store's own writer (`create_store`) from
    arrays in dataset order: `masks` bool [R, n_train], `correct` bool [R, N] and each of
    `outputs` (e.g. ``logit_confidence=`` float [R, N]); its columns are the split's examples
    in the order `index` (default the dataset's), a wrong prediction is label + 1. Returns the
    path."""
    import zarr

    from heldout.predict import store as st

    n = len(labels)
    index = np.arange(n) if index is None else np.asarray(index, np.int64)
    layout = st.StoreLayout("synthetic", "", split, "", "/exp", "mlp", num_classes, n,
                            masks.shape[1], ("correct", *outputs), "float32", tuple(names))
    st.create_store(path, layout, [int(name.split("/")[1]) for name in names],
                    [float(name.split("/")[0]) for name in names], labels[index], index)
    group = zarr.open_group(str(path), mode="r+")
    group["mask"][...] = masks
    group["correct"][...] = correct[:, index]
    prediction = np.where(correct, labels, (labels + 1) % num_classes)
    group["prediction"][...] = prediction[:, index].astype(np.int32)
    for name, value in outputs.items():
        group[name][...] = np.asarray(value, np.float32)[:, index]
    group["completed"][...] = True
    return path

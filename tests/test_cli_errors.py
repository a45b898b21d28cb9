"""The CLI turns input errors (`HeldoutError`) into one line and exit 2; bugs stay tracebacks."""

import pytest

from heldout import cli
from heldout.errors import HeldoutError


@pytest.mark.parametrize("argv, message", [
    (["extract", "x.tar.gz", "--dest", "d", "--ratios", "0.7,abc"],
     "such as 0.7,0.5, each in (0, 1]; got 'abc'"),
    (["download", "nonesuch", "--dest", "d"], "nonesuch"),
    (["download", "x", "--dest", "d", "--url", "ftp://h/x.tar.gz", "--md5", "0" * 32],
     "not an http:// or https:// address"),
])
def test_input_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"heldout {argv[0]}: error: ") and message in err[-1]


def test_a_bug_is_not_disguised_as_an_input_error(monkeypatch):
    # Before the fix every ValueError/KeyError became "error: ..." with exit 2, hiding bugs.
    def buggy(args):
        return {}["missing"]

    parser = cli.build_parser()
    args = parser.parse_args(["extract", "x.tar.gz", "--dest", "d"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, buggy))
    with pytest.raises(KeyError):
        cli.main(["extract", "x.tar.gz", "--dest", "d"])


class _Fixed:
    def __init__(self, parser, args, handler):
        self.args = args
        self.args.handler = handler

    def parse_args(self, argv):
        return self.args


def test_library_errors_share_one_base():
    from heldout.data.arrays import DatasetSplitError
    from heldout.experiment import LayoutError
    from heldout.release.archives import parse_ratios

    assert issubclass(DatasetSplitError, (HeldoutError, KeyError))
    assert issubclass(LayoutError, HeldoutError)
    with pytest.raises(HeldoutError):
        parse_ratios("2")


def test_a_parameter_the_library_names_is_printed_as_the_commands_flag(tmp_path, capsys):
    from heldout.errors import InputError
    from heldout.release.download import download_release

    url = "http://127.0.0.1:9/x.tar.gz"
    why = ("needs {}, the MD5 of the archive it serves (the released cifar10-inception archive "
           "has MD5 bc3b75203381709f8224810946be14b1)")
    with pytest.raises(InputError) as e:  # the Python API: its parameters
        download_release("cifar10-inception", tmp_path / "d", url=url)
    assert str(e.value) == f"`url`={url} " + why.format("`md5`")
    assert cli.main(["download", "cifar10-inception", "--dest", str(tmp_path / "d"),
                     "--url", url]) == 2  # the command: its flags
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"heldout download: error: --url {url} " + why.format("--md5")
    assert not (tmp_path / "d").exists()


def test_with_flags_writes_the_flags_of_the_command_only():
    from heldout.cli.common import with_flags

    flags = cli.build_parser().parse_args(
        ["predict", "exp", "--dataset_npz", "d.npz", "--split", "test", "--out", "s.zarr"]
    ).parameter_flags
    assert with_flags("`workers`=3: only 2 GPUs are visible; give at most `workers`=2",
                      flags) == "--workers 3: only 2 GPUs are visible; give at most --workers 2"
    assert with_flags("use `overwrite`=True instead", flags) == "use --overwrite instead"
    assert with_flags("pass `cross_check`=False", flags) == "pass --no_cross_check"  # an alias
    assert with_flags("views (`views`)", flags) == "views (--views)"
    # Positional arguments, other commands' options and other names in backticks stay.
    for kept in ("`path`", "`ratio`", "`num_targets`=9", "`heldout.data`", "`heldout lira`"):
        assert with_flags(kept, flags) == kept
    lira = cli.build_parser().parse_args(["lira", "s.zarr", "--out", "l.npz"]).parameter_flags
    assert with_flags("`num_targets`=9: choose", lira) == "--targets 9: choose"

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

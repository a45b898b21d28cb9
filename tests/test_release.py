"""Tests for heldout.release: the released archives and member selection."""

import pytest

from heldout.release.archives import (
    ARCHIVES,
    MemberSelection,
    RunMember,
    check_md5,
    get_archive,
    is_ratio_name,
    parse_member,
    parse_only,
    parse_ratios,
)


def test_released_archives_have_published_names_urls_and_md5s():
    base = "http://storage.googleapis.com/gresearch/heldout-training-checkpoints/"
    assert {name: (a.url, a.md5) for name, a in ARCHIVES.items()} == {
        "cifar10-inception": (
            base + "cifar10-inception.tar.gz",
            "bc3b75203381709f8224810946be14b1",
        ),
        "cifar100-inception": (
            base + "cifar100-inception.tar.gz",
            "f87218368528afa6e2407c8410f1ffa1",
        ),
        "imagenet-resnet50": (
            base + "imagenet-resnet50.tar.gz",
            "64c39ef7702462b83959af9de622b4b8",
        ),
    }
    assert ARCHIVES["imagenet-resnet50"].gs_url == (
        "gs://gresearch/heldout-training-checkpoints/imagenet-resnet50.tar.gz"
    )


def test_unknown_experiment_lists_the_released_ones():
    with pytest.raises(ValueError, match="cifar10-inception, cifar100-inception, imagenet"):
        get_archive("cifar10")


def test_check_md5_normalises_and_rejects():
    assert check_md5(" BC3B75203381709F8224810946BE14B1 ") == "bc3b75203381709f8224810946be14b1"
    with pytest.raises(ValueError, match="32 hexadecimal"):
        check_md5("bc3b")
    with pytest.raises(ValueError, match="32 hexadecimal"):
        check_md5("z" * 32)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("exp/0.7/3/aux_arrays.npz", RunMember("exp", "0.7", 3, "aux_arrays")),
        ("exp/0.7/3/checkpoints/ckpt-10.index", RunMember("exp", "0.7", 3, "checkpoints")),
        ("exp/0.7/3/checkpoints/checkpoint", RunMember("exp", "0.7", 3, "checkpoints")),
        ("exp/0.7/3/log.txt", RunMember("exp", "0.7", 3, "other")),
        ("a/b/1.0/12/aux_arrays.npz", RunMember("a/b", "1.0", 12, "aux_arrays")),
        ("0.5/0/aux_arrays.npz", RunMember("", "0.5", 0, "aux_arrays")),
        ("exp/0.7/3", None),  # the run directory itself
        ("exp/0.7/x/aux_arrays.npz", None),  # run ids are integers
        ("exp/1.5/3/aux_arrays.npz", None),  # ratios are in (0, 1]
        ("exp/README", None),
    ],
)
def test_parse_member_places_members_in_the_layout(name, expected):
    assert parse_member(tuple(name.split("/"))) == expected


def test_ratio_names():
    assert [is_ratio_name(n) for n in ("0.7", ".5", "1", "1.0", "0", "1.5", "0.7x", "-0.5")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_parse_only_and_ratios():
    assert parse_only("aux_arrays") == ("aux_arrays",)
    assert parse_only("aux_arrays, checkpoints,aux_arrays") == ("aux_arrays", "checkpoints")
    assert parse_only(None) is None and parse_only("") is None
    with pytest.raises(ValueError, match=r"aux_arrays, checkpoints; got \['weights'\]"):
        parse_only("weights")
    assert parse_ratios("0.7,0.5") == (0.7, 0.5)
    assert parse_ratios(None) is None and parse_ratios(" ") is None
    with pytest.raises(ValueError, match="got 'seventy'"):
        parse_ratios("0.7,seventy")
    with pytest.raises(ValueError, match=r"in \(0, 1\]; got '1.5'"):
        parse_ratios("1.5")


def test_selection_by_kind_and_ratio():
    aux = RunMember("exp", "0.70", 1, "aux_arrays")
    ckpt = RunMember("exp", "0.5", 1, "checkpoints")
    everything = MemberSelection()
    assert everything.wants(aux) and everything.wants(ckpt) and everything.wants(None)
    only_aux = MemberSelection.from_args("aux_arrays", None)
    assert only_aux.wants(aux) and not only_aux.wants(ckpt) and not only_aux.wants(None)
    by_ratio = MemberSelection.from_args(None, "0.7")
    assert by_ratio.wants(aux)  # "0.70" is the ratio 0.7
    assert not by_ratio.wants(ckpt) and not by_ratio.wants(None)
    assert by_ratio.missing_ratios(["0.5", "0.70"]) == ()
    assert MemberSelection(ratios=(0.7, 0.3)).missing_ratios(["0.70"]) == (0.3,)
    assert only_aux.describe() == "aux_arrays of all ratios"
    assert MemberSelection(("aux_arrays",), (0.7, 0.5)).describe() == (
        "aux_arrays of ratios 0.7, 0.5"
    )

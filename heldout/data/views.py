"""Views: fixed transforms of the images a model is queried with (LiRA's augmentations).

Carlini et al. (2022, "Membership Inference Attacks From First Principles") query each model
on augmentations of every example (the horizontally mirrored image, the cheapest, and shifted
images) and average the attack over them. A view is named by up to three parts joined by ``+``,
in this order:

- ``flip``: the horizontal mirror (columns reversed: left becomes right);
- ``down<k>`` or ``up<k>``: the content moved k pixels down (up), the k rows it leaves zero;
- ``right<k>`` or ``left<k>``: the content moved k pixels right (left), the k columns it leaves
  zero;

e.g. ``flip``, ``right2``, ``down1+left1``, ``flip+down2+right2``; ``identity`` is the image
as it is. The flip is applied before the shifts; 1 <= k < the image's height (width). The zero
fill is in the model's input space (black for the ``uint8 / scale`` inputs; for ImageNet's
normalised inputs, the mean colour). Pure numpy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from heldout.errors import ViewError

IDENTITY = "identity"
#: The parts of a name, each matched in this order (at most once).
_PARTS = (re.compile(r"^(flip)$"), re.compile(r"^(down|up)([0-9]+)$"),
          re.compile(r"^(right|left)([0-9]+)$"))


@dataclasses.dataclass(frozen=True)
class View:
    """A fixed image transform: a horizontal mirror, then a shift with zero fill.

    Attributes:
      name: the view's name (see the module docstring).
      flip: mirror the columns first.
      dy: rows the content moves down (negative: up).
      dx: columns the content moves right (negative: left).
    """

    name: str
    flip: bool = False
    dy: int = 0
    dx: int = 0

    def apply(self, images: np.ndarray) -> np.ndarray:
        """The view of a batch of images [b, height, width, channels] (NHWC, any dtype):
        a new array of the same shape and dtype (the batch itself for ``identity``).

        Raises:
          ViewError: images that are not [b, H, W, C], or a shift not smaller than H (W).
        """
        images = np.asarray(images)
        if images.ndim != 4:
            raise ViewError(f"view {self.name}: expected images [b, H, W, C], found "
                            f"{list(images.shape)}")
        check_views([self], images.shape[1:])
        if self.name == IDENTITY:
            return images
        source = images[:, :, ::-1] if self.flip else images
        out = np.zeros_like(images)
        h, w = images.shape[1:3]
        rows_to, rows_from = _span(self.dy, h)
        cols_to, cols_from = _span(self.dx, w)
        out[:, rows_to, cols_to] = source[:, rows_from, cols_from]
        return out


def _span(shift: int, size: int) -> tuple[slice, slice]:
    """(destination, source) slices of a shift by `shift` along an axis of `size`."""
    if shift >= 0:
        return slice(shift, size), slice(0, size - shift)
    return slice(0, size + shift), slice(-shift, size)


def parse_view(name: str) -> View:
    """The `View` a name stands for (see the module docstring).

    Raises:
      ViewError: a name outside the grammar, or a shift of 0 pixels.
    """
    name = str(name).strip()
    if name == IDENTITY:
        return View(IDENTITY)
    found: list[tuple[str, ...] | None] = [None] * len(_PARTS)
    next_part = 0
    for part in name.split("+"):
        for k in range(next_part, len(_PARTS)):
            match = _PARTS[k].match(part)
            if match:
                found[k], next_part = match.groups(), k + 1
                break
        else:
            raise ViewError(
                f"unknown view {name!r}: expected identity, or flip, down<k>/up<k> and "
                "right<k>/left<k> joined by '+' in that order (e.g. flip, right2, "
                "flip+down1+left1)")
    flip, vertical, horizontal = found
    dy = dx = 0
    if vertical is not None:
        dy = int(vertical[1]) * (1 if vertical[0] == "down" else -1)
    if horizontal is not None:
        dx = int(horizontal[1]) * (1 if horizontal[0] == "right" else -1)
    if (vertical is not None and dy == 0) or (horizontal is not None and dx == 0):
        raise ViewError(f"view {name!r}: a shift of 0 pixels; leave that part out")
    return View(name, flip is not None, dy, dx)


def parse_views(names: str | Iterable[str]) -> tuple[View, ...]:
    """The views of a comma-separated list (or a sequence of names), ``identity`` first
    (added when not named; a model's plain outputs are its identity view).

    Raises:
      ViewError: an unknown or repeated view.
    """
    if isinstance(names, str):
        names = names.split(",")
    views = [parse_view(n) for n in names if str(n).strip()]
    seen = [(v.flip, v.dy, v.dx) for v in views]
    repeated = sorted({v.name for v, key in zip(views, seen, strict=True)
                       if seen.count(key) > 1})
    if repeated:
        raise ViewError(f"views {','.join(repeated)}: the same transform named more than once")
    return (View(IDENTITY), *[v for v in views if v.name != IDENTITY])


def check_views(views: Sequence[View], image_shape: Sequence[int]) -> None:
    """Checks that every shift is smaller than the images' height and width.

    Raises:
      ViewError: naming the view and the image shape.
    """
    h, w = (int(d) for d in tuple(image_shape)[:2])
    for view in views:
        if abs(view.dy) >= h or abs(view.dx) >= w:
            raise ViewError(f"view {view.name}: shifts by {abs(view.dy)} rows and "
                            f"{abs(view.dx)} columns; the images are {h}x{w}")

"""Images as small inline PNGs: `data:` URIs for the self-contained page (Pillow, base64)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

THUMBNAIL_PIXELS = 64
"""Images larger than this on a side are downscaled (Lanczos) to fit; smaller ones are kept at
their size and enlarged by the browser (CSS ``image-rendering: pixelated``)."""


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_png(image: np.ndarray, scale: float = 255.0,
                  pixels: int = THUMBNAIL_PIXELS) -> bytes:
    """PNG bytes of one image.

    Args:
      image: [h, w] or [h, w, c] with c in (1, 3, 4), values in [0, scale] (uint8 or float).
      scale: the value of full intensity (255; 16 for the digits).
      pixels: the longest side of the thumbnail; larger images are downscaled.
    """
    array = np.asarray(image, np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    array = np.clip(np.rint(array * (255.0 / scale)), 0, 255).astype(np.uint8)
    picture = Image.fromarray(array)
    if max(picture.size) > pixels:
        picture.thumbnail((pixels, pixels), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

"""Progress bars that count bytes (tqdm) and byte sizes for people: downloads and extraction."""

from __future__ import annotations

from tqdm import tqdm


def byte_bar(total: int | None, desc: str, progress: bool, initial: int = 0) -> tqdm:
    """A tqdm bar on stderr counting bytes (KiB, MiB, ... with rate and ETA); off unless `progress`.

    Args:
      total: bytes expected, or None while unknown (set `bar.total` later).
      desc: label, e.g. the file name.
      progress: show the bar; False gives a disabled bar that still accepts updates.
      initial: bytes already done (a resumed download).
    """
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        mininterval=0.5,
        delay=0.5,  # shown once the size is known
        dynamic_ncols=True,
    )


def human_bytes(n: float) -> str:
    """A byte count for people: ``"512 B"``, ``"1.5 KiB"``, ... up to TiB (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"

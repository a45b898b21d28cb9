"""Safe `.npz` reading, the one schema check of its arrays, and atomic writing.

Every array file this library reads comes from a download or another machine, so it is opened
with ``allow_pickle=False`` and read eagerly: a truncated or corrupt file fails here, with its
path, instead of half-way through a computation. Each reader then checks every key it uses with
`require` (present, dtype kind, shape, sizes shared between keys), so a malformed file is refused
with one uniform line, e.g.
``est.npz: key 'count_in': expected int array [n_train=2000], found float64 [1999]``.
Every file it writes goes to a temporary name in the same directory and is renamed into place,
so an interrupted write never leaves a file that looks complete (`heldout.atomic`).
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Collection, Mapping, MutableMapping

import numpy as np

from heldout.atomic import atomic_write
from heldout.errors import HeldoutError, NpzError

Dim = int | str | None
"""One dimension of a `require` shape: an exact size, a name bound across keys, or None (any)."""

_KIND_WORDS = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex", "U": "str",
               "S": "bytes"}


def _describe_kind(kind: str | None) -> str:
    if not kind:
        return ""
    words = []
    for char in kind:
        if char not in _KIND_WORDS:
            raise ValueError(f"unknown dtype kind {char!r} in {kind!r}; use {''.join(_KIND_WORDS)}")
        word = "int" if char in "iu" and "i" in kind and "u" in kind else _KIND_WORDS[char]
        if word not in words:
            words.append(word)
    return " or ".join(words) + " "


def _describe_shape(shape: tuple[Dim, ...] | None, sizes: Mapping[str, int]) -> str:
    if shape is None:
        return "array"
    if shape == ():
        return "scalar"
    dims = []
    for dim in shape:
        if dim is None:
            dims.append("*")
        elif isinstance(dim, str):
            dims.append(f"{dim}={sizes[dim]}" if dim in sizes else dim)
        else:
            dims.append(str(dim))
    return f"array [{', '.join(dims)}]"


def _describe_found(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{dtype} scalar" if shape == () else f"{dtype} [{', '.join(map(str, shape))}]"


def require(
    arrays: Mapping[str, np.ndarray],
    key: str,
    kind: str | None,
    shape: tuple[Dim, ...] | None = None,
    *,
    source: str = "arrays",
    sizes: MutableMapping[str, int] | None = None,
    what: str = "",
    error: type[HeldoutError] = NpzError,
) -> np.ndarray:
    """Checks one key of a file's arrays: present, of a dtype kind, of a shape.

    The one schema check of every reader (aux arrays, accumulators, estimates, published score
    files, `.npz` datasets, ImageNet labels, dataset fingerprints, the predictions store).
    Semantic checks (permutations, ranges, counts) stay with each reader. A reader binds the
    file once and checks each key::

        sizes = {}
        get = functools.partial(require, arrays, source=path, sizes=sizes, what="an estimate")
        mem = get("memorization", "f", ("n_train",))
        infl = get("influence", "f", ("n_test", "n_train"))  # n_train must agree

    Args:
      arrays: key -> array, e.g. from `load_npz` (anything with ``dtype`` and ``shape``, such as
        a zarr array, is checked without being read; other values go through `np.asarray`).
      key: the key to check.
      kind: accepted numpy dtype kinds, e.g. ``"b"`` (bool), ``"iu"`` (any integer), ``"f"``
        (float), ``"U"`` (str), ``"SU"`` (bytes or str); None accepts any dtype.
      shape: None (any shape), ``()`` (a scalar), or a tuple whose entries are an exact size
        (int), None (any size) or a name (str) that every key sharing it must agree on.
      source: the file (or other origin) named first in the message.
      sizes: name -> size of the names already bound; names that `shape` binds for the first
        time are added to it (so pass the same dict to each key of one file). Pre-fill it with
        known sizes (e.g. ``{"n_train": 2000}`` from the dataset) to check them too. Without it,
        a name only has to agree within this one key.
      what: what the file is (e.g. ``"an aux_arrays.npz"``), added to a missing-key message.
      error: the `HeldoutError` subclass to raise (default `NpzError`).

    Returns:
      The array as stored (not converted; the caller casts it).

    Raises:
      error: one line naming `source`, `key`, what was expected and what was found, e.g.
        ``est.npz: key 'count_in': expected int array [n_train=2000], found float64 [1999]``,
        or ``a.npz: missing key 'format' (expected str scalar in an accumulator); found keys
        ['a', 'b']``.
      ValueError: `kind` holds an unknown letter (a bug in the caller, not bad input).
    """
    bound = {} if sizes is None else sizes
    expected = _describe_kind(kind) + _describe_shape(shape, bound)
    if key not in arrays:
        context = f" in {what}" if what else ""
        raise error(f"{source}: missing key {key!r} (expected {expected}{context}); found keys "
                    f"{sorted(arrays)}")
    value = arrays[key]
    if not (hasattr(value, "dtype") and hasattr(value, "shape")):
        value = np.asarray(value)
    dtype, found = np.dtype(value.dtype), tuple(value.shape)
    new: dict[str, int] = {}
    ok = not kind or dtype.kind in kind
    if ok and shape is not None:
        ok = len(found) == len(shape)
        for dim, size in zip(shape, found, strict=True) if ok else ():
            if isinstance(dim, str):
                want = bound.get(dim, new.get(dim))
                if want is None:
                    new[dim] = size
                elif want != size:
                    ok = False
            elif dim is not None and dim != size:
                ok = False
    if not ok:
        raise error(f"{source}: key {key!r}: expected {expected}, found "
                    f"{_describe_found(dtype, found)}")
    if sizes is not None:
        sizes.update(new)
    return value


def _read_stored_members(path: str, keys: Collection[str] | None = None
                        ) -> dict[str, np.ndarray] | None:
    """Every array of an `.npz` whose members are all stored uncompressed ``.npy`` files (what
    `np.savez` writes), each read with one ``readinto`` into its array, the CRC-32 checked as
    `zipfile` does; None for any other archive (compressed or other members), which
    `np.load` then reads.

    Same result as ``np.load(path, allow_pickle=False)`` (only the members of `keys` read, when
    given), in one copy instead of two and with
    the GIL released for the reads and the checksums, so threads reading runs overlap (numpy's
    reader goes through `zipfile` 256 KiB at a time, in Python). The zip structures are parsed
    by `zipfile` (the central directory) and by the zip format's 30-byte local header (APPNOTE
    4.3.7: name and extra-field lengths at offsets 26 and 28), the ``.npy`` headers by
    `numpy.lib.format`.

    Raises:
      zipfile.BadZipFile, EOFError, OSError: truncated or corrupt file.
      ValueError: an object (pickled) array, or an unreadable ``.npy`` header.
    """
    with open(path, "rb") as f:
        with zipfile.ZipFile(f) as archive:
            members = archive.infolist()
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if any(m.compress_type != zipfile.ZIP_STORED or m.flag_bits & 0x1
               or not m.filename.endswith(".npy") for m in members):
            return None
        file_size = os.fstat(f.fileno()).st_size
        arrays = {}
        for m in members:
            if keys is not None and m.filename[:-4] not in keys:
                continue
            f.seek(m.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header of member {m.filename!r}")
            start = m.header_offset + 30 + sum(struct.unpack("<HH", local[26:30]))
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version not in readers:
                return None
            shape, fortran_order, dtype = readers[version](f)
            if dtype.hasobject:
                raise ValueError("object arrays cannot be loaded when allow_pickle=False")
            header = f.tell() - start
            nbytes = math.prod(shape) * dtype.itemsize
            if header + nbytes != m.file_size or start + m.file_size > file_size:
                raise EOFError(f"member {m.filename!r}: {m.file_size} bytes in the zip "
                               f"directory, {header + nbytes} by its header")
            f.seek(start)
            crc = zlib.crc32(f.read(header))
            array = np.empty(math.prod(shape), dtype)
            if nbytes and f.readinto(array.view(np.uint8)) != nbytes:
                raise EOFError(f"member {m.filename!r} is truncated")
            if zlib.crc32(array.view(np.uint8) if nbytes else b"", crc) != m.CRC:
                raise zipfile.BadZipFile(f"bad CRC-32 for member {m.filename!r}")
            arrays[m.filename[:-4]] = array.reshape(shape, order="F" if fortran_order else "C")
    return arrays


def load_npz(path: str | os.PathLike, keys: Collection[str] | None = None
             ) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` file (or those of `keys`) into memory, refusing pickled
    objects.

    Archives of stored ``.npy`` members (`np.savez`'s) are read by `_read_stored_members`, one
    copy per array; any other (`np.savez_compressed`'s) by `np.load`.

    Args:
      path: the `.npz` file.
      keys: read only these keys (those the file has; the others' bytes are not read, e.g. a
        file's few small keys beside its large arrays); None: every key.

    Returns:
      A dict from key to array.

    Raises:
      NpzError: the file is missing, not a zip archive, truncated, or holds an object array
        (which could only be read by unpickling untrusted data).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NpzError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic != b"PK\x05\x06":
        kind = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise NpzError(f"{path}: not an .npz file ({kind}; found first bytes {magic!r})")
    try:
        arrays = _read_stored_members(path, keys)
        if arrays is not None:
            return arrays
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files if keys is None or key in keys}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise NpzError(
                f"{path}: holds an object array, which can only be read by unpickling; "
                "refused (allow_pickle=False)"
            ) from e
        raise NpzError(f"{path}: unreadable .npz ({e})") from e
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise NpzError(f"{path}: truncated or corrupt .npz ({type(e).__name__}: {e})") from e


#: Bytes handed to each write of an array (a view of its memory, not a copy).
_WRITE_CHUNK = 2**26


def _write_stored_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    """Writes `array` as the stored member ``<key>.npy`` of `archive`, as `np.savez` does (the
    same ``.npy`` header, ``force_zip64``), but from the array's own memory: `np.savez` copies
    every 16 MiB into a new bytes object first, which for a 2.4 GB influence costs seconds of
    page faults in the kernel. `zipfile` computes the CRC-32 as the data goes through."""
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    header = np.lib.format.header_data_from_array_1_0(array)
    with archive.open(key + ".npy", "w", force_zip64=True) as member:
        try:
            np.lib.format.write_array_header_1_0(member, header)
        except ValueError:  # a header over 64 KiB (many fields)
            np.lib.format.write_array_header_2_0(member, header)
        data = (array.T if header["fortran_order"] else array).reshape(-1).view(np.uint8)
        for start in range(0, len(data), _WRITE_CHUNK):
            member.write(memoryview(data[start : start + _WRITE_CHUNK]))


def save_npz_atomic(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], compress: bool = False
) -> None:
    """Writes `arrays` to `path` as `.npz` through a temporary file and a rename.

    Uncompressed, the file is what `np.savez` writes, each array written straight from its
    memory (no copy of it is made, `_write_stored_member`); compressed, `np.savez_compressed`.

    Args:
      path: destination; its directory is created if needed.
      arrays: key to array; object arrays are refused.
      compress: use `np.savez_compressed`.

    Raises:
      NpzError: an array has dtype object.
    """
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.hasobject:
            raise NpzError(f"{os.fspath(path)}: key {key!r} is an object array; refusing to write")
    with atomic_write(path) as f:
        if compress:
            np.savez_compressed(f, **arrays)
            return
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for key, value in arrays.items():
                _write_stored_member(archive, key, value)

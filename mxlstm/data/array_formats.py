"""Binary array formats: MNIST IDX files and NumPy ``.npz`` archives.

These return plain arrays; :mod:`mxlstm.data.sources` wraps them in a ``SequenceDataset``.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from mxlstm.data.fileio import PathLike, note_file, read_bytes
from mxlstm.data.validate import check_declared_size, float32_checked, open_regular
from mxlstm.errors import DataError

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def read_idx(path: PathLike, magic: int, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with the given magic number and rank.

    Returns
    -------
    numpy.ndarray
        uint8 array of the shape stored in the header, e.g. ``(N, rows, cols)``.
    """
    raw = read_bytes(path)
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found is not None and found != magic:
        raise DataError(f"bad IDX magic number {found}, expected {magic}", path=path,
                        field="magic")
    if len(raw) < header:
        raise DataError(f"file too short for an IDX header ({len(raw)} bytes)", path=path)
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(f"header says shape {shape} ({expected} bytes of data) but the file "
                        f"has {len(raw) - header}", path=path)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read IDX images ``(N, rows, cols)`` uint8 and labels ``(N,)`` int64; counts must match."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC, 3)
    if len(images) == 0:
        raise DataError("no images (the IDX header says 0 items)", path=images_path)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, 1)
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images in {os.fspath(images_path)} but "
                        f"{len(labels)} labels", path=labels_path)
    return images, labels.astype(np.int64)


def _npz_get(archive, key: str, path: PathLike, allow_pickle: bool) -> np.ndarray:
    if key not in archive.files:
        raise DataError(f"no array '{key}' (has: {', '.join(archive.files)})", path=path,
                        field=key)
    _check_member(archive, key, path)
    try:
        return archive[key]
    except MemoryError:
        raise DataError("array too large to load", path=path, field=key) from None
    except ValueError as err:
        hint = "" if allow_pickle else " (object array: pass allow_pickle=True for trusted files)"
        raise DataError(f"cannot read array: {err}{hint}", path=path, field=key) from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:  # truncated / corrupt
        raise DataError(f"cannot read array: damaged archive ({err})", path=path,
                        field=key) from None


def _check_member(archive, key: str, path: PathLike) -> None:
    """Refuse a member whose (declared) decompressed size passes the cap, or whose ``.npy``
    header declares more data than the member holds, before numpy allocates it."""
    zipped = getattr(archive, "zip", None)
    if zipped is None:
        return
    try:
        info = zipped.getinfo(f"{key}.npy")
    except KeyError:
        return
    check_declared_size(info.file_size, path, key)
    try:
        with zipped.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
            header_size = member.tell()
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read array: damaged archive ({err})", path=path,
                        field=key) from None
    if dtype.hasobject:
        return
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > info.file_size - header_size:
        raise DataError(f"cannot read array: damaged archive (header says shape {shape} "
                        f"but the array holds {info.file_size - header_size} bytes)",
                        path=path, field=key)


def _as_sequences(x: np.ndarray, path: PathLike, key: str) -> list[np.ndarray]:
    if x.dtype == object:
        try:
            seqs = [np.asarray(s, dtype=np.float64) for s in x.reshape(-1)]
        except (TypeError, ValueError) as err:
            raise DataError(f"object array items are not numeric ({err})", path=path,
                            field=key) from None
        seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
    elif x.dtype.kind not in "iuf":
        raise DataError(f"expected numbers, got dtype {x.dtype}", path=path, field=key)
    elif x.ndim == 2:
        seqs = list(x[:, :, None].astype(np.float64))
    elif x.ndim == 3:
        seqs = list(x.astype(np.float64))
    else:
        raise DataError(f"expected shape (N, T, C), (N, T) or an object array, got {x.shape}",
                        path=path, field=key)
    if any(s.ndim != 2 or len(s) == 0 for s in seqs):
        raise DataError("each sequence must be a non-empty (T, C) or (T,) array", path=path,
                        field=key)
    if len({s.shape[1] for s in seqs}) > 1:
        raise DataError("sequences have different numbers of channels", path=path, field=key)
    return seqs


def _truncate(seqs: list[np.ndarray], lengths: np.ndarray, path: PathLike,
              key: str) -> list[np.ndarray]:
    if len(lengths) != len(seqs):
        raise DataError(f"{len(lengths)} lengths for {len(seqs)} sequences", path=path, field=key)
    for i, (s, n) in enumerate(zip(seqs, lengths, strict=True)):
        if not 1 <= n <= len(s):
            raise DataError(f"length {n} of sequence {i} outside 1..{len(s)}", path=path,
                            field=key)
    return [s[: int(n)] for s, n in zip(seqs, lengths, strict=True)]


class _Npz:
    """``np.load`` of an already opened regular file, closing both at the end."""

    def __init__(self, path: PathLike, allow_pickle: bool) -> None:
        self.handle = open_regular(path)
        try:
            self.archive = np.load(self.handle, allow_pickle=allow_pickle)
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
            self.handle.close()
            raise DataError(f"not a readable .npz file ({err})", path=path) from None
        except MemoryError:
            self.handle.close()
            raise DataError("not a readable .npz file (too large)", path=path) from None
        if not hasattr(self.archive, "files"):
            self.handle.close()
            raise DataError("a single .npy array, expected a .npz archive", path=path)

    def __enter__(self):
        return self.archive

    def __exit__(self, *exc) -> None:
        self.archive.close()
        self.handle.close()


def _open_npz(path: PathLike, allow_pickle: bool) -> _Npz:
    archive = _Npz(path, allow_pickle)
    note_file(path)
    return archive


def read_npz_arrays(path: PathLike, x_key: str = "x", y_key: str = "y",
                    lengths_key: str | None = None, allow_pickle: bool = False
                    ) -> tuple[list[np.ndarray], np.ndarray, list[str] | None]:
    """Read ``(sequences (T_i, C) float64, labels (N,), label_names or None)`` from a ``.npz``.

    See :func:`mxlstm.data.sources.load_npz` for the accepted layouts.
    """
    with _open_npz(path, allow_pickle) as archive:
        seqs = _as_sequences(_npz_get(archive, x_key, path, allow_pickle), path, x_key)
        y = _npz_get(archive, y_key, path, allow_pickle).reshape(-1)
        if lengths_key is None and "lengths" in archive.files:  # padded x + valid lengths
            lengths_key = "lengths"
        lengths = None if lengths_key is None else _npz_get(archive, lengths_key, path, False)
        names = None
        if "label_names" in archive.files:
            names = [str(n) for n in _npz_get(archive, "label_names", path, False).tolist()]
    if len(seqs) == 0:
        raise DataError(f"no sequences (array '{x_key}' holds 0 items)", path=path,
                        field=x_key)
    if len(y) != len(seqs):
        raise DataError(f"{len(y)} labels for {len(seqs)} sequences", path=path, field=y_key)
    if lengths is not None:
        if lengths.dtype.kind not in "iu":
            raise DataError("lengths must be integers", path=path, field=lengths_key)
        seqs = _truncate(seqs, lengths.reshape(-1), path, lengths_key)
    for i, s in enumerate(seqs):
        if not np.isfinite(s).all():
            raise DataError(f"non-finite value in sequence {i}", path=path, field=x_key)
        seqs[i] = float32_checked(s, path, field=x_key, where=f"in sequence {i}")
    if y.dtype.kind not in "iubf":
        raise DataError(f"labels must be numbers, got dtype {y.dtype}", path=path, field=y_key)
    if names is not None:
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.isfinite(y).all()
                                            and (y == np.round(y)).all()):
            raise DataError("with 'label_names' the labels must be class numbers", path=path,
                            field=y_key)
        outside = (y < 0) | (y >= len(names))
        if outside.any():
            raise DataError(f"label {y[outside][0]:g} outside 0..{len(names) - 1} (the "
                            f"{len(names)} entries of 'label_names')", path=path, field=y_key)
    return seqs, y, names

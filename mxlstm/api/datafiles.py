"""In-memory data -> the files the command line reads, so that the Python estimators run
the very same readers, checks, splits and fingerprints as ``mxlstm train --data``.

Series go to ``.npz`` (``x (N, T, C)`` float32 padded, ``lengths (N,)``, ``y``, and
``label_names`` for class labels), texts to JSON lines (``text``, ``label``), a corpus to a
UTF-8 text file. The ``.npz`` is written byte-for-byte the same for the same arrays (no
timestamps), so a resumed ``fit`` on unchanged data passes the run's fingerprint check and
changed data is refused.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mxlstm.errors import DataError

_INTEGER = re.compile(r"-?\d+")


def as_series(x: Any, lengths: Any = None, what: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, T, C) float32 padded with zeros, lengths (N,) int64)`` of ``x``: an array
    ``(N, T, C)`` or ``(N, T)`` (one channel), or a list of ``(T_i, C)`` / ``(T_i,)`` arrays.
    ``lengths`` (padded arrays only) keeps ``x[i, :lengths[i]]``."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        arr = x[..., None] if x.ndim == 2 else x
        if arr.ndim != 3:
            raise DataError(f"{what}: expected an array (N, T, C) or (N, T), got shape "
                            f"{x.shape}")
        if lengths is None:
            lengths = np.full(len(arr), arr.shape[1], dtype=np.int64)
    else:
        items = [np.asarray(s) for s in x]
        items = [s[:, None] if s.ndim == 1 else s for s in items]
        if not items or any(s.ndim != 2 for s in items):
            raise DataError(f"{what}: expected a non-empty list of (T_i, C) or (T_i,) arrays")
        if len({s.shape[1] for s in items}) != 1:
            raise DataError(f"{what}: the sequences have different channel counts "
                            f"{sorted({s.shape[1] for s in items})}")
        if lengths is not None:
            raise DataError(f"{what}: lengths is for padded arrays; a list of sequences "
                            f"carries its own lengths")
        lengths = np.array([len(s) for s in items], dtype=np.int64)
        arr = np.zeros((len(items), max(lengths.max(), 1), items[0].shape[1]), np.float64)
        for i, s in enumerate(items):
            arr[i, :len(s)] = s
    if arr.dtype.kind not in "iubf":
        raise DataError(f"{what}: values must be numbers, got dtype {arr.dtype}")
    lengths = np.asarray(lengths).reshape(-1)
    if lengths.dtype.kind not in "iu" or len(lengths) != len(arr):
        raise DataError(f"lengths: expected {len(arr)} integers, got {lengths.dtype} "
                        f"of shape {lengths.shape}")
    if len(arr) == 0:
        raise DataError(f"{what}: no sequences")
    with np.errstate(over="ignore"):
        arr32 = arr.astype(np.float32)
    return arr32, lengths.astype(np.int64)


def class_labels(y: Any) -> tuple[np.ndarray, list[str]]:
    """``(indices (N,) int64, label_names)`` of class labels ``y`` (numbers or strings);
    names sorted as the command line sorts them (numbers by value)."""
    values = np.asarray(y).reshape(-1)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise DataError("y: class labels must be whole numbers or strings (fractional "
                            "targets? use SequenceRegressor)")
        values = values.astype(np.int64)
    if values.dtype.kind in "iub":
        classes = np.unique(values)
        return np.searchsorted(classes, values).astype(np.int64), [str(c) for c in classes]
    names = sorted({str(v) for v in values.tolist()})
    index = {n: k for k, n in enumerate(names)}
    return np.array([index[str(v)] for v in values.tolist()], np.int64), names


def decode_classes(names: Sequence[str]) -> np.ndarray:
    """The ``classes_`` array of ``label_names``: integers when every name is one."""
    if names and all(_INTEGER.fullmatch(n) for n in names):
        return np.array([int(n) for n in names])
    return np.array(list(names), dtype=object)


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """An uncompressed ``.npz`` without timestamps (same arrays, same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, member.getvalue())
    return _write_bytes(path, buffer.getvalue())


def write_series(path: Path, x: Any, y: Any | None, lengths: Any = None,
                 label_names: Sequence[str] | None = None, what: str = "X") -> Path:
    """``x`` and targets ``y`` as the ``.npz`` the series tasks read; ``label_names``
    (class labels) makes ``y`` indices into it. ``y=None``: placeholders (class 0 or 0.0)
    for data to predict."""
    arr, lengths = as_series(x, lengths, what)
    if y is None:
        y = np.zeros(len(arr), np.int64 if label_names is not None else np.float32)
    targets = np.asarray(y).reshape(-1)
    if len(targets) != len(arr):
        raise DataError(f"{len(targets)} labels for {len(arr)} sequences in {what}")
    arrays = {"x": arr, "lengths": lengths, "y": targets}
    if label_names is not None:
        arrays["label_names"] = np.array(list(label_names), dtype=np.str_)
    return write_npz(path, **arrays)


def write_texts(path: Path, texts: Sequence[str], labels: Sequence[Any],
                what: str = "texts") -> Path:
    """``texts`` and their ``labels`` as JSON lines ``{"text": ..., "label": ...}``."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{what}: expected a list of strings")
    labels = list(labels)
    if len(labels) != len(texts):
        raise DataError(f"{len(labels)} labels for {len(texts)} texts in {what}")
    lines = [json.dumps({"text": t, "label": _json_label(v)}, ensure_ascii=False)
             for t, v in zip(texts, labels)]
    return _write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def write_corpus(path: Path, text: str) -> Path:
    if not isinstance(text, str):
        raise DataError(f"corpus: expected a string, got {type(text).__name__}")
    return _write_bytes(path, text.encode("utf-8"))


def _json_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (str, int, bool)) else str(value)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path

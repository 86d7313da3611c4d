"""Readers for numeric sequence data; each returns a :class:`SequenceDataset`.

Sources: the embedded digits CSV, MNIST IDX files, ``.npz`` arrays, UEA/UCR ``.ts``
files and a simple one-series-per-row CSV. Sequences are float32 arrays ``(T_i, C)``
(time steps by channels) holding only the valid steps, so ``lengths[i] == T_i``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
from mxnet.gluon.data import Dataset

from mxlstm.data.array_formats import read_idx_pair, read_npz_arrays
from mxlstm.data.fileio import PathLike, embedded_path, read_lines
from mxlstm.data.ts_format import parse_ts
from mxlstm.data.validate import (
    canonical_label,
    check_label_kinds,
    float32_checked,
    index_labels,
)
from mxlstm.errors import DataError
from mxlstm.preprocess import floor_std, normalize

__all__ = [
    "SequenceDataset", "subset", "load_digits", "stratified_split", "load_idx", "load_npz",
    "load_ts", "load_csv_series", "NormalizationStats", "load_uea", "embedded_path",
    "UEA_DATASETS", "UEA_REGRESSION", "uea_path", "sort_label_names",
]

UEA_DATASETS = ("JapaneseVowels", "GunPoint", "ItalyPowerDemand", "OSULeaf", "ACSF1")
# regression sets (``@targetLabel true``) of the Monash/UEA extrinsic regression archive
UEA_REGRESSION = ("Tecator",)


class SequenceDataset(Dataset):
    """Variable-length multichannel sequences with one label each.

    Parameters
    ----------
    sequences : sequence of array_like
        ``N`` arrays of shape ``(T_i, C)`` (stored as float32), same ``C`` for all.
    labels : array_like, shape (N,)
        Integer class indices (stored int32) or float regression targets (float32).
    label_names : list of str, optional
        Class names, ``label_names[k]`` for class index ``k``.
    path : str, optional
        Where the data came from (for messages).

    ``dataset[i]`` is ``(features (T_i, C) float32, label, length int)``.
    """

    def __init__(self, sequences: Sequence[np.ndarray], labels: np.ndarray | Sequence,
                 label_names: Sequence[str] | None = None, path: PathLike | None = None):
        self.sequences = [np.asarray(s, dtype=np.float32) for s in sequences]
        labels = np.asarray(labels)
        int_kind = labels.dtype.kind in "iub"
        self.labels = labels.astype(np.int32 if int_kind else np.float32)
        self.label_names = [str(n) for n in (label_names or [])]
        self.path = None if path is None else os.fspath(path)
        self.lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        self._check()

    def _check(self) -> None:
        if self.labels.shape != (len(self.sequences),):
            raise ValueError(f"{len(self.sequences)} sequences but labels of shape "
                             f"{self.labels.shape}")
        channels = {s.shape[1] if s.ndim == 2 else -1 for s in self.sequences}
        if len(channels) > 1 or -1 in channels:
            raise ValueError(f"sequences must all be (T, C) with one C, got C in {channels}")
        # The last guard of the validation layer: nothing infinite after the float32 cast
        # (NaN may be a kept missing value, see load_ts(missing='nan')).
        for i, seq in enumerate(self.sequences):
            if np.isinf(seq).any():
                raise DataError(f"infinite value in sequence {i} after the conversion to "
                                f"float32", path=self.path)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.int32 | np.float32, int]:
        return self.sequences[idx], self.labels[idx], int(self.lengths[idx])

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        low = int(self.lengths.min()) if len(self) else 0
        return (f"SequenceDataset(n={len(self)}, channels={self.num_channels}, "
                f"lengths={low}..{self.max_length}, "
                f"classes={len(self.label_names)}, path={self.path!r})")

    @property
    def num_channels(self) -> int:
        """Number of features per time step ``C`` (0 for an empty dataset)."""
        return self.sequences[0].shape[1] if self.sequences else 0

    @property
    def num_classes(self) -> int:
        """Number of class names (0 for regression targets)."""
        return len(self.label_names)

    @property
    def max_length(self) -> int:
        """Longest sequence length ``T_max``."""
        return int(self.lengths.max(initial=0))

    def subset(self, indices: Sequence[int] | np.ndarray) -> SequenceDataset:
        """Return a new dataset with the items at ``indices`` (in that order)."""
        return subset(self, indices)

    def padded(self, pad_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x (N, T_max, C) float32, lengths (N,) int64)`` padded at the end."""
        x = np.full((len(self), self.max_length, self.num_channels), pad_value, np.float32)
        for i, seq in enumerate(self.sequences):
            x[i, : len(seq)] = seq
        return x, self.lengths.copy()


def subset(dataset: SequenceDataset, indices: Sequence[int] | np.ndarray) -> SequenceDataset:
    """Take items ``indices`` of ``dataset`` as a new :class:`SequenceDataset`."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    return SequenceDataset([dataset.sequences[i] for i in idx], dataset.labels[idx],
                           dataset.label_names, dataset.path)




# --------------------------------------------------------------------------- digits
def load_digits(path: PathLike | None = None) -> SequenceDataset:
    """Load the 8x8 digits CSV (64 pixels 0..16, then the class 0..9) as sequences.

    Each image is read row by row: 8 time steps of 8 features, values kept as 0..16
    floats. ``path`` defaults to the embedded ``digits.csv.gz``.

    Returns
    -------
    SequenceDataset
        ``N`` items of shape ``(8, 8)``; labels 0..9, ``label_names`` ``'0'..'9'``.
    """
    path = embedded_path("digits.csv.gz") if path is None else os.fspath(path)
    rows = []
    for line, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        fields = text.split(",")
        if len(fields) != 65:
            raise DataError(f"expected 65 comma-separated values, got {len(fields)}", path, line)
        try:
            values = [int(f) for f in fields]
        except ValueError:
            bad = next(i for i, f in enumerate(fields) if not f.strip().lstrip("-").isdigit())
            name = "class" if bad == 64 else f"pixel {bad + 1}"
            raise DataError(f"not an integer: '{fields[bad]}'", path, line, name) from None
        if not all(0 <= v <= 16 for v in values[:64]) or not 0 <= values[64] <= 9:
            raise DataError("pixel outside 0..16 or class outside 0..9", path, line)
        rows.append(values)
    table = np.array(rows, dtype=np.int64)
    images = table[:, :64].astype(np.float32).reshape(-1, 8, 8)
    return SequenceDataset(list(images), table[:, 64], [str(k) for k in range(10)], path)


def stratified_split(labels: np.ndarray | Sequence[int], test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split.

    Exactly: ``rng = numpy.random.RandomState(seed)``; for each class ``c`` in ascending
    order, ``idx = rng.permutation(numpy.flatnonzero(labels == c))`` and
    ``n_test = int(test_fraction * len(idx) + 0.5)`` (rounded half up); ``idx[:n_test]``
    goes to test, the rest to train. Both index arrays are returned sorted ascending.

    Returns
    -------
    (train_idx, test_idx) : tuple of int64 arrays
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(test_fraction * len(idx) + 0.5)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    empty = [np.zeros(0, np.int64)]
    return (np.sort(np.concatenate(train + empty)).astype(np.int64),
            np.sort(np.concatenate(test + empty)).astype(np.int64))


# --------------------------------------------------------------------------- IDX / npz
def load_idx(images_path: PathLike, labels_path: PathLike) -> SequenceDataset:
    """Load MNIST-style IDX files (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels, ``.gz`` ok).

    Magic numbers 2051 (images) and 2049 (labels) are checked. Each ``(rows, cols)``
    image becomes ``rows`` time steps of ``cols`` features, values kept as 0..255 floats.

    Returns
    -------
    SequenceDataset
        ``N`` items of shape ``(rows, cols)``; ``label_names`` are the distinct labels in
        ascending order (``labels`` index them).
    """
    images, labels = read_idx_pair(images_path, labels_path)
    ids, names = index_labels(labels, labels_path, "label")
    return SequenceDataset(list(images.astype(np.float32)), ids, names, images_path)


def load_npz(path: PathLike, x_key: str = "x", y_key: str = "y", lengths_key: str | None = None,
             allow_pickle: bool = False) -> SequenceDataset:
    """Load sequences from a NumPy ``.npz`` archive.

    Parameters
    ----------
    x_key : str
        Array ``(N, T, C)``, ``(N, T)`` (one channel) or an object array of ``(T_i, C)``.
    y_key : str
        Labels ``(N,)``: integer classes or float targets. An optional ``label_names``
        array of strings names the classes (``y`` then indexes it); without one, integer
        (or boolean) labels become classes named by their distinct values in ascending
        order, and ``labels`` index those names (one label ``2e9`` is one class).
    lengths_key : str, optional
        Array ``(N,)``: item ``i`` keeps steps ``[:lengths[i]]`` (default: array ``lengths``).
    allow_pickle : bool
        Needed for object arrays; only use it for trusted files.
    """
    seqs, y, names = read_npz_arrays(path, x_key, y_key, lengths_key, allow_pickle)
    if names is None:
        if y.dtype.kind in "iub":
            y, names = index_labels(y, path, y_key)
        else:
            names = []
    return SequenceDataset(seqs, y, names, path)


# --------------------------------------------------------------------------- .ts / CSV
def load_ts(path: PathLike, missing: str = "interpolate") -> SequenceDataset:
    """Load a UEA/UCR ``.ts`` file (see :mod:`mxlstm.data.ts_format`).

    ``missing`` handles ``?`` values: ``'interpolate'`` (linear along time, edges take the
    nearest observed value), ``'nan'`` (keep NaN) or ``'error'``. Items are ``(T_i, C)``;
    ``label_names`` follow the ``@classLabel`` header order.
    """
    data = parse_ts(path, missing=missing)
    names = data.header.class_labels or []
    return SequenceDataset(data.series, np.array(data.labels), names, path)


def sort_label_names(names: Iterable[str]) -> list[str]:
    """Sort distinct label names: numerically when all parse as numbers, else as strings."""
    names = set(names)
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def load_csv_series(path: PathLike, has_header: bool | None = None,
                    delimiter: str = ",") -> SequenceDataset:
    """Load a CSV with one univariate series per row: the values, then the label.

    Rows may differ in length. ``has_header=None`` treats the first row as a header when
    its first field is not a number. Labels are written canonically (``1.0`` is ``1``, see
    :func:`mxlstm.data.validate.canonical_label`); class names are the distinct labels,
    sorted numerically when all are numbers, else as strings. Items are ``(T_i, 1)``.
    """
    text = "\n".join(read_lines(path))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        rows = list(enumerate(reader, start=1))
    except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
        raise DataError(f"cannot parse as CSV ({err})", path, reader.line_num) from None
    rows = [(n, r) for n, r in rows if any(f.strip() for f in r)]
    if has_header is None:
        has_header = not _is_number(rows[0][1][0]) if rows and rows[0][1] else False
    rows = rows[1:] if has_header else rows
    if not rows:
        raise DataError("no data rows", path=path)
    seqs, labels = [], []
    for line, fields in rows:
        if len(fields) < 2:
            raise DataError("need at least one value and a label", path, line)
        try:
            values = np.array([float(f) for f in fields[:-1]])
        except ValueError:
            col = next(i for i, f in enumerate(fields[:-1]) if not _is_number(f))
            raise DataError(f"non-numeric value '{fields[col]}'", path, line,
                            f"column {col + 1}") from None
        if not np.isfinite(values).all():
            raise DataError("non-finite value", path, line)
        seqs.append(float32_checked(values, path, line)[:, None])
        labels.append(canonical_label(fields[-1]))
    check_label_kinds(labels, path, [n for n, _ in rows])
    names = sort_label_names(labels)
    index = {name: k for k, name in enumerate(names)}
    return SequenceDataset(seqs, np.array([index[v] for v in labels], np.int64), names, path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- embedded UEA
def load_uea(name: str, split: str, missing: str = "interpolate") -> SequenceDataset:
    """Load an embedded UEA/UCR dataset.

    Parameters
    ----------
    name : {'JapaneseVowels', 'GunPoint', 'ItalyPowerDemand', 'OSULeaf', 'ACSF1'}
        Case-insensitive.
    split : {'train', 'test'}
        The archive's own split.
    """
    return load_ts(uea_path(name, split), missing=missing)


def uea_path(name: str, split: str, names: Sequence[str] = UEA_DATASETS) -> str:
    """The embedded file of UEA set ``name`` (one of ``names``, case-insensitive) and
    ``split`` ('train' or 'test'): ``uea/NAME_SPLIT.ts`` or, for the larger sets,
    ``uea/NAME_SPLIT.ts.gz``."""
    match = [n for n in names if n.lower() == str(name).lower()]
    if not match:
        raise DataError(f"unknown embedded UEA dataset '{name}' (have: "
                        f"{', '.join(names)})", field="name")
    if str(split).lower() not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got '{split}'", field="split")
    relative = f"uea/{match[0]}_{split.upper()}.ts"
    try:
        return embedded_path(relative)
    except DataError:
        return embedded_path(relative + ".gz")


# --------------------------------------------------------------------------- normalization
class NormalizationStats:
    """Per-channel mean and standard deviation, fitted on training data only.

    ``mean`` and ``std`` are float32 ``(C,)``; ``std`` is floored at ``STD_FLOOR``
    (:mod:`mxlstm.preprocess`, the rule the standalone predictor applies too).
    """

    def __init__(self, mean: np.ndarray | Sequence[float], std: np.ndarray | Sequence[float],
                 count: int = 0):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = floor_std(std)
        self.count = int(count)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ")

    @classmethod
    def fit(cls, dataset: SequenceDataset) -> NormalizationStats:
        """Compute statistics over all valid time steps (NaNs ignored) of ``dataset``."""
        if len(dataset) == 0:
            raise ValueError("cannot fit normalization statistics on an empty dataset")
        steps = np.concatenate(dataset.sequences, axis=0).astype(np.float64)
        count = int(np.isfinite(steps).all(axis=1).sum())
        mean, std = np.nanmean(steps, axis=0), np.nanstd(steps, axis=0)
        for name, value in (("mean", mean), ("standard deviation", std)):
            float32_checked(value, dataset.path, field="normalization",
                            where=f"(the per-channel {name})", allow_nan=True)
        return cls(mean, std, count)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize ``x`` of shape ``(..., C)``, e.g. ``(T, C)`` or ``(N, T, C)``; float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"x has {x.shape[-1]} channels, statistics have {len(self.mean)}")
        return normalize(x, self.mean, self.std)

    def transform(self, dataset: SequenceDataset) -> SequenceDataset:
        """Return a normalized copy of ``dataset`` (same labels, names and path)."""
        return SequenceDataset([self.apply(s) for s in dataset.sequences], dataset.labels,
                               dataset.label_names, dataset.path)

    def to_dict(self) -> dict:
        """JSON-able ``{'mean': [...], 'std': [...], 'count': n}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}

    @classmethod
    def from_dict(cls, data: dict) -> NormalizationStats:
        """Inverse of :meth:`to_dict`; malformed input raises :class:`DataError`."""
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
            count = int(data.get("count", 0))
        except (KeyError, TypeError, ValueError) as err:
            message = f"bad normalization statistics ({err!r})"
            raise DataError(message, field="normalization") from None
        valid = mean.ndim == 1 and mean.shape == std.shape
        if not valid or not np.isfinite(mean).all() or not (np.isfinite(std) & (std >= 0)).all():
            raise DataError("normalization mean/std must be equal-length finite lists, std >= 0",
                            field="normalization")
        return cls(mean, std, count)

"""Parser for the UEA/UCR time-series classification ``.ts`` format.

A file is ``#`` comment lines, ``@`` header lines up to ``@data``, then one series per
line: the dimensions separated by ``:``, the values of one dimension separated by ``,``,
and (when ``@classLabel true`` or ``@targetLabel true``) the label as the last ``:`` field.
``?`` marks a missing value. Time-stamped data (``@timeStamps true``) is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mxlstm.data.fileio import PathLike, read_lines
from mxlstm.data.validate import canonical_label, float32_checked
from mxlstm.errors import DataError
from mxlstm.preprocess import empty_channel, fill_missing

MISSING_POLICIES = ("error", "nan", "interpolate")

_BOOL_TAGS = {
    "timestamps": "timestamps",
    "missing": "missing",
    "univariate": "univariate",
    "equallength": "equal_length",
}
_INT_TAGS = {"dimensions": "dimensions", "serieslength": "series_length"}


@dataclass
class TsHeader:
    """The ``@`` header of a ``.ts`` file (``None`` = not given)."""

    problem_name: str | None = None
    timestamps: bool | None = None
    missing: bool | None = None
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_labels: list[str] | None = None
    target_label: bool = False

    @property
    def labelled(self) -> bool:
        """Whether each data line ends with a label field."""
        return self.class_labels is not None or self.target_label


@dataclass
class TsData:
    """Parsed ``.ts`` content: ``series[i]`` is ``(T_i, C)`` float32, ``labels`` per series.

    ``labels`` holds class indices into ``header.class_labels`` (int), regression targets
    (float, ``@targetLabel true``) or ``-1`` for unlabelled files.
    """

    header: TsHeader
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[int | float] = field(default_factory=list)


def _parse_bool(value: str, tag: str, path: PathLike, line: int) -> bool:
    low = value.strip().lower()
    if low not in ("true", "false"):
        raise DataError(f"expected true or false, got '{value.strip()}'", path, line, f"@{tag}")
    return low == "true"


def _parse_header_line(header: TsHeader, text: str, path: PathLike, line: int) -> bool:
    """Apply one ``@tag value`` line to ``header``; return True for ``@data``."""
    tag, _, value = text[1:].partition(" ")
    key = tag.lower()
    if key == "data":
        return True
    if key == "problemname":
        header.problem_name = value.strip()
    elif key in _BOOL_TAGS:
        setattr(header, _BOOL_TAGS[key], _parse_bool(value, tag, path, line))
    elif key in _INT_TAGS:
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if number < 1:
            raise DataError(f"expected a positive integer, got '{value.strip()}'", path, line,
                            f"@{tag}")
        setattr(header, _INT_TAGS[key], number)
    elif key == "classlabel":
        flag, *names = value.split()
        names = [canonical_label(n) for n in names]  # '1.0' and '1' are one class
        if _parse_bool(flag, tag, path, line):
            if not names:
                raise DataError("'@classLabel true' lists no labels", path, line, f"@{tag}")
            if len(set(names)) != len(names):
                raise DataError("duplicate class labels", path, line, f"@{tag}")
            header.class_labels = names
    elif key == "targetlabel":
        header.target_label = _parse_bool(value.split()[0] if value.split() else "", tag,
                                          path, line)
    else:
        raise DataError(f"unknown header tag '@{tag}'", path, line)
    return False


def _check_header(header: TsHeader, path: PathLike, line: int) -> int | None:
    """Validate the finished header; return the expected number of dimensions or None."""
    if header.timestamps:
        raise DataError("'@timeStamps true' (time-stamped values) is not supported", path, line)
    if header.class_labels is not None and header.target_label:
        raise DataError("both @classLabel and @targetLabel are true", path, line)
    if header.univariate:
        if header.dimensions not in (None, 1):
            raise DataError(f"@univariate true but @dimensions {header.dimensions}", path, line)
        return 1
    return header.dimensions


def _parse_values(text: str, path: PathLike, line: int, dim: int) -> np.ndarray:
    """Parse one comma-separated dimension into a float64 vector; ``?`` becomes NaN."""
    parts = text.split(",")
    try:
        values = np.array(parts, dtype=np.float64)
    except ValueError:
        values = np.empty(len(parts), dtype=np.float64)
        for i, part in enumerate(parts):
            token = part.strip()
            if token == "?":
                values[i] = np.nan
                continue
            try:
                values[i] = float(token)
            except ValueError:
                what = "empty value" if not token else f"non-numeric value '{token}'"
                raise DataError(f"{what} at position {i + 1}", path, line,
                                f"dimension {dim}") from None
    if np.isinf(values).any():
        position = int(np.flatnonzero(np.isinf(values))[0]) + 1
        raise DataError(f"infinite value at position {position}", path, line, f"dimension {dim}")
    float32_checked(values, path, line, f"dimension {dim}", allow_nan=True)
    return values


def _fill_missing(series: np.ndarray, policy: str, path: PathLike, line: int) -> np.ndarray:
    """Apply the missing-value policy to a ``(T, C)`` series holding NaNs."""
    if policy == "nan":
        return series
    for c in range(series.shape[1] if policy == "error" else 0):
        bad = np.isnan(series[:, c])
        if bad.any():
            position = int(np.flatnonzero(bad)[0]) + 1
            raise DataError(f"missing value '?' at position {position} (missing='error')",
                            path, line, f"dimension {c + 1}")
    empty = empty_channel(series)
    if empty is not None:
        raise DataError("all values missing, nothing to interpolate from", path, line,
                        f"dimension {empty + 1}")
    return fill_missing(series)  # the rule the standalone predictor applies too


def _parse_label(text: str, header: TsHeader, path: PathLike, line: int) -> int | float:
    label = canonical_label(text)
    if header.class_labels is not None:
        try:
            return header.class_labels.index(label)
        except ValueError:
            known = " ".join(header.class_labels)
            raise DataError(f"unknown class label '{label}' (@classLabel lists: {known})",
                            path, line, "class label") from None
    try:
        target = float(label)
    except ValueError:
        raise DataError(f"non-numeric target '{label}'", path, line, "target") from None
    float32_checked(np.float64(target), path, line, "target")
    return target


def _parse_data_line(text: str, data: TsData, n_dims: int | None, missing: str,
                     path: PathLike, line: int) -> int:
    """Parse one series line into ``data``; return the number of dimensions seen."""
    header = data.header
    fields = text.split(":")
    if header.labelled:
        if len(fields) < 2:
            raise DataError("missing label after the last ':'", path, line)
        label = _parse_label(fields[-1], header, path, line)
        fields = fields[:-1]
    else:
        label = -1
    if n_dims is not None and len(fields) != n_dims:
        source = "the header" if header.dimensions or header.univariate else "earlier lines"
        raise DataError(f"found {len(fields)} dimensions, expected {n_dims} (from {source})",
                        path, line)
    channels = [_parse_values(f, path, line, d + 1) for d, f in enumerate(fields)]
    lengths = [len(c) for c in channels]
    if len(set(lengths)) > 1:
        raise DataError(f"dimensions of one series have different lengths {lengths}", path, line)
    if header.equal_length and header.series_length and lengths[0] != header.series_length:
        raise DataError(f"series length {lengths[0]}, but @seriesLength is "
                        f"{header.series_length}", path, line)
    series = _fill_missing(np.stack(channels, axis=1), missing, path, line)
    data.series.append(series.astype(np.float32))
    data.labels.append(label)
    return len(fields)


def parse_ts(path: PathLike, missing: str = "interpolate") -> TsData:
    """Parse a ``.ts`` file (optionally ``.gz``).

    Parameters
    ----------
    path : str or PathLike
        The file.
    missing : {'interpolate', 'nan', 'error'}
        What to do with ``?`` (and ``NaN``) values: linear interpolation along time with
        the edges filled by the nearest observed value, keep NaN, or raise.

    Returns
    -------
    TsData
        Series as ``(T_i, C)`` float32 arrays with their labels and the header.
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    data = TsData(TsHeader())
    n_dims: int | None = None
    in_data = False
    for line, raw in enumerate(read_lines(path), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("@"):
            if in_data:
                raise DataError("header line after @data", path, line)
            in_data = _parse_header_line(data.header, text, path, line)
            if in_data:
                n_dims = _check_header(data.header, path, line)
        elif not in_data:
            raise DataError("data before the @data line (not a .ts header)", path, line)
        else:
            n_dims = _parse_data_line(text, data, n_dims, missing, path, line)
    if not in_data:
        raise DataError("no @data line: not a .ts file", path=path)
    if not data.series:
        raise DataError("no series after @data", path=path)
    return data

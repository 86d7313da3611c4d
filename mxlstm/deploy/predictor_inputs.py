"""What the standalone predictor reads: input files in every format ``mxlstm train`` reads,
or stdin (the ``meta.json`` schema is in ``predictor_meta.py``).

Standard library and numpy only, like ``predictor.py`` beside it (see there).
:func:`read_inputs` turns a file (or ``-``, standard input) into raw inputs:

=================  =====================================================================
numeric models     ``.npy`` ``(N, T, C)`` / ``(N, T)``; ``.npz`` (array ``x`` or the only
                   array, optional ``lengths``); ``.ts`` (UEA/UCR, labels optional); IDX
                   images (``*idx3-ubyte``); CSV, one univariate series a row, with or
                   without the label column of training (see :func:`_label_column`);
                   any other name: one series a line (``.ts`` data lines or CSV values)
text models        ``.tsv`` / ``.csv`` (the recorded text field; a header row naming it is
                   recognised, else the first column), ``.jsonl`` (the text field of each
                   object), anything else: one text per line
=================  =====================================================================

Names ending in ``.gz`` are decompressed. Standard input has no name: its format is
sniffed (``.npy``/``.npz``/gzip/IDX magic bytes, an ``@data`` line, a JSON object, a
header naming the text field) unless given; ``predictor_files.py`` reads the bytes (regular
files only, size cap).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import zipfile
import zlib

import numpy as np

try:  # inside the mxlstm package, or copied beside predictor.py
    from ..preprocess import empty_channel, fill_missing  # noqa: I001
    from .predictor_files import (FORMATS, IDX_IMAGES_MAGIC, MAX_INPUT_BYTES,
                                  NUMERIC_FORMATS, STDIN, TEXT_FORMATS, _binary_format,
                                  _decode, _gunzip, _sniff, format_from_name,
                                  read_input_bytes)
    from .predictor_meta import InputError
except ImportError:
    from predictor_files import (FORMATS, IDX_IMAGES_MAGIC, MAX_INPUT_BYTES,  # noqa: I001
                                 NUMERIC_FORMATS, STDIN, TEXT_FORMATS, _binary_format,
                                 _decode, _gunzip, _sniff, format_from_name,
                                 read_input_bytes)
    from predictor_meta import InputError
    from preprocess import empty_channel, fill_missing



class Inputs(list):
    """``[(line or row number, raw input), ...]`` of one file, with ``name`` (the path or
    ``<stdin>``), ``format`` and ``where``: the location prefix of each input for messages."""

    def __init__(self, items, name: str, fmt: str, where: list[str]) -> None:
        super().__init__(items)
        self.name, self.format, self.where = name, fmt, where


# ----------------------------------------------------------------------------- numbers
def _values(tokens: list[str], where: str) -> np.ndarray:
    """Floats of ``tokens``; ``?``/``nan`` become NaN (filled later)."""
    values = []
    for position, token in enumerate(tokens, start=1):
        token = token.strip()
        try:
            values.append(np.nan if token == "?" else float(token))
        except ValueError:
            what = "empty value" if not token else f"non-numeric value {token!r}"
            raise InputError(f"{where}{what} at position {position}") from None
    array = np.array(values, dtype=np.float64)
    if np.isinf(array).any():
        raise InputError(f"{where}infinite value")
    return array


def _fill_missing(series: np.ndarray, where: str) -> np.ndarray:
    """The training rule (:func:`preprocess.fill_missing`) on one raw input."""
    empty = empty_channel(series)
    if empty is not None:
        raise InputError(f"{where}channel {empty + 1}: all values missing")
    return fill_missing(series)


def parse_series_line(line: str, channels: int, where: str = "") -> np.ndarray:
    """One ``.ts`` data line (channels split by ``:``, an optional trailing label) or one
    CSV line of a univariate series -> ``(T, C)`` float64."""
    fields = line.strip().split(":")
    if len(fields) == channels + 1:
        fields = fields[:-1]  # the label of a labelled .ts line
    if len(fields) != channels:
        hint = " (separate channels with ':' as in .ts, or give .npy (N, T, C))" \
            if len(fields) == 1 else ""
        raise InputError(f"{where}found {len(fields)} channel(s), the model expects "
                         f"{channels}{hint}")
    columns = [_values(f.split(","), where + (f"channel {k + 1}: " if channels > 1 else ""))
               for k, f in enumerate(fields)]
    if len({len(c) for c in columns}) > 1:
        raise InputError(f"{where}channels have different lengths "
                         f"{[len(c) for c in columns]}")
    return _fill_missing(np.stack(columns, axis=1), where)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip() == "?"
    return True


# ----------------------------------------------------------------------------- arrays
def _load_array(name: str, data: bytes, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, lengths or None)`` of a ``.npy``, ``.npz`` or IDX images file."""
    if fmt == "idx":
        if len(data) < 16 or int.from_bytes(data[:4], "big") != IDX_IMAGES_MAGIC:
            raise InputError(f"{name}: not an IDX images file (magic number "
                             f"{IDX_IMAGES_MAGIC} expected)")
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
        if len(data) - 16 != shape[0] * shape[1] * shape[2]:
            raise InputError(f"{name}: header says shape {shape} but the file has "
                             f"{len(data) - 16} bytes of data")
        return np.frombuffer(data, np.uint8, offset=16).reshape(shape), None
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if fmt == "npy" or not hasattr(loaded, "files"):
            if fmt == "npz":
                raise InputError(f"{name}: a .npy array, not a .npz archive")
            return loaded, None
        with loaded as archive:
            keys = archive.files
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(f"{name}: field x: no array 'x' (has: "
                                 f"{', '.join(keys) or 'nothing'})")
            lengths = archive["lengths"] if "lengths" in keys and key != "lengths" else None
            return archive[key], lengths
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        what = "object arrays are refused (allow_pickle=False)" \
            if "allow_pickle" in str(err) else str(err).splitlines()[0][:200]
        raise InputError(f"{name}: not a readable .{fmt} file ({what})") from None


def _array_inputs(name: str, x: np.ndarray, lengths, features: int) -> list:
    if x.dtype.kind not in "biuf":
        raise InputError(f"{name}: field x: expected numbers, got dtype {x.dtype}")
    if x.ndim == 2 and features == 1:
        x = x[:, :, None]
    if x.ndim != 3:
        raise InputError(f"{name}: field x: expected an array (N, T, C), got shape {x.shape}")
    if len(x) == 0 or x.shape[1] == 0:
        raise InputError(f"{name}: no inputs (an array of shape {x.shape})")
    if lengths is None:
        return [x[k] for k in range(len(x))]
    lengths = np.asarray(lengths).reshape(-1)
    if lengths.dtype.kind not in "iu" or len(lengths) != len(x):
        raise InputError(f"{name}: field lengths: expected {len(x)} integers, got "
                         f"{len(lengths)} of dtype {lengths.dtype}")
    bad = np.flatnonzero((lengths < 1) | (lengths > x.shape[1]))
    if len(bad):
        raise InputError(f"{name}: field lengths: length {lengths[bad[0]]} of row "
                         f"{bad[0] + 1} outside 1..{x.shape[1]}")
    return [x[k, :int(n)] for k, n in enumerate(lengths)]


# ----------------------------------------------------------------------------- series text
def _one_length(spec: dict) -> int | None:
    """The one length of every training series, when the export records it."""
    if spec.get("fixed_length") or spec.get("sequence_length"):
        return spec.get("fixed_length") or spec.get("sequence_length")
    seen = spec.get("series_lengths")
    return seen[0] if isinstance(seen, list) and len(seen) == 2 and seen[0] == seen[1] \
        else None


def _label_column(name: str, rows: list, meta: dict, choice: str) -> bool:
    """Whether the last value of each CSV row is the label column of training: non-numeric
    last values that are all class names are; else the rows' value count against the one
    training length T (T + 1 values: a label); else last values that are not all class
    names are no labels. Anything else is ambiguous and refused (``--label-column``)."""
    if choice in ("yes", "no"):
        return choice == "yes"
    names = set(meta.get("label_names") or [])
    lasts = [fields[-1] for _, fields in rows]
    words = [v for v in lasts if not _is_number(v)]
    if words:  # class names, or a typo that the parse reports
        return all(v in names for v in words)
    counts = sorted({len(fields) for _, fields in rows})
    length = _one_length(meta["input"])
    if length and counts == [length]:
        return False
    if length and counts == [length + 1]:
        return True
    if names and any(v not in names for v in lasts):
        return False
    trained = f"series of {length} steps" if length else "series of several lengths"
    raise InputError(f"{name}: cannot tell whether the last column is a label: rows hold "
                     f"{'/'.join(map(str, counts))} values, the model was trained on "
                     f"{trained}, and every last value could be a class name; give "
                     f"--label-column yes or no")


def _series_inputs(name: str, lines: list[str], meta: dict, fmt: str, choice: str):
    features = meta["input"]["features"]
    in_header = fmt == "ts" and any(x.strip().lower().startswith("@data") for x in lines)
    rows = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if in_header:
            in_header = not stripped.lower().startswith("@data")
            continue
        if stripped and not stripped.startswith(("#", "@")):
            rows.append((number, stripped))
    if fmt == "ts" or features != 1 or any(":" in text for _, text in rows):
        return [(n, parse_series_line(text, features, f"{name}:{n}: ")) for n, text in rows]
    split = [(n, [f.strip() for f in next(csv.reader([text]))]) for n, text in rows]
    if split and not _is_number(split[0][1][0]):
        split = split[1:]  # a header row, as in training
    if not split:
        return []
    label = _label_column(name, split, meta, choice)
    if label and any(len(fields) < 2 for _, fields in split):
        n = next(n for n, fields in split if len(fields) < 2)
        raise InputError(f"{name}:{n}: need at least one value and the label column")
    return [(n, _fill_missing(_values(fields[:-1] if label else fields, f"{name}:{n}: ")
                              [:, None], f"{name}:{n}: ")) for n, fields in split]


# ----------------------------------------------------------------------------- text
def _text_inputs(name: str, lines: list[str], fmt: str, field: str) -> list:
    if fmt == "lines":
        return [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if fmt == "jsonl":
        items = []
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as err:
                raise InputError(f"{name}:{n}: invalid JSON ({err})") from None
            value = record.get(field) if isinstance(record, dict) else record
            if not isinstance(value, str):
                what = "missing" if isinstance(record, dict) and field not in record else \
                    f"expected a string, got {type(value).__name__}"
                raise InputError(f"{name}:{n}: field {field}: {what}")
            items.append((n, value))
        return items
    if fmt == "tsv":
        records = [(n, line.split("\t")) for n, line in enumerate(lines, start=1)
                   if line.strip()]
    else:
        reader, records, start = csv.reader(io.StringIO("\n".join(lines))), [], 1
        try:
            for fields in reader:
                if any(f.strip() for f in fields):
                    records.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as err:
            raise InputError(f"{name}:{start}: cannot parse as CSV ({err})") from None
    column = 0
    if records and field in [f.strip() for f in records[0][1]]:
        column = [f.strip() for f in records[0][1]].index(field)
        records = records[1:]
    for n, fields in records:
        if len(fields) <= column:
            raise InputError(f"{name}:{n}: field {field}: missing ({len(fields)} columns)")
    return [(n, fields[column]) for n, fields in records]


# ----------------------------------------------------------------------------- entry
def read_inputs(path: str, meta: dict, fmt: str | None = None, label_column: str = "auto",
                max_bytes: int = MAX_INPUT_BYTES) -> Inputs:
    """Raw inputs of a file (``-``: standard input) as :class:`Inputs` for ``meta`` (a
    checked ``PREFIX-meta.json``); ``fmt`` overrides the format found from the name."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"--format: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if label_column not in ("auto", "yes", "no"):
        raise InputError(f"--label-column: expected auto, yes or no, got {label_column!r}")
    text_model = meta["input"]["type"] == "tokens"
    field = ((meta.get("config") or {}).get("data") or {}).get("text_field") or "text"
    name, data = read_input_bytes(path, max_bytes)
    gzipped = data[:2] == b"\x1f\x8b" if path == STDIN else name.lower().endswith(".gz")
    if gzipped:
        data = _gunzip(name, data, max_bytes)
    fmt = fmt or (_binary_format(data) if path == STDIN else format_from_name(name))
    lines = None
    if fmt not in ("npy", "npz", "idx"):
        lines = _decode(name, data)
        fmt = fmt or _sniff(lines, text_model, field)
    allowed = TEXT_FORMATS if text_model else NUMERIC_FORMATS
    if fmt not in allowed:
        what = "text: .txt (one a line), .tsv, .csv or .jsonl" if text_model else \
            "series: .npy, .npz, .ts, CSV or IDX images"
        raise InputError(f"{name}: a {'text' if text_model else 'numeric'} model takes "
                         f"{what}, not {fmt} input")
    if lines is None:
        x, lengths = _load_array(name, data, fmt)
        arrays = _array_inputs(name, x, lengths, meta["input"]["features"])
        return Inputs(enumerate(arrays, start=1), name, fmt,
                      [f"{name}: row {k}: " for k in range(1, len(arrays) + 1)])
    items = _text_inputs(name, lines, fmt, field) if text_model else \
        _series_inputs(name, lines, meta, fmt, label_column)
    if not items:
        raise InputError(f"{name}: no inputs" + (" (only a header or comments)"
                                                 if any(x.strip() for x in lines) else ""))
    return Inputs(items, name, fmt, [f"{name}:{n}: " for n, _ in items])


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The input options shared by ``mxlstm predict`` and this file's command line."""
    parser.add_argument("--top-k", type=int, metavar="K",
                        help="the K most probable labels (classifiers) or next tokens "
                             "(language models), 1..classes; default 5, or all if fewer")
    parser.add_argument("--format", choices=FORMATS,
                        help="input format (default: from the file name; sniffed on stdin)")
    parser.add_argument("--label-column", choices=("auto", "yes", "no"), default="auto",
                        help="CSV series: whether the last value of a row is its label "
                             "(default: detected from the export, refused when ambiguous)")
    parser.add_argument("--max-input-mb", type=float, default=MAX_INPUT_BYTES / 2 ** 20,
                        metavar="MB", help="refuse larger input files (default %(default)g)")


def read_options(args: argparse.Namespace) -> dict:
    if not args.max_input_mb > 0:
        raise InputError(f"--max-input-mb must be positive, got {args.max_input_mb:g}")
    return {"fmt": args.format, "label_column": args.label_column,
            "max_bytes": int(args.max_input_mb * 2 ** 20)}

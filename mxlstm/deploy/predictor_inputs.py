"""What the standalone predictor reads: ``PREFIX-meta.json`` (:func:`validate_meta`, the
one schema check of the CLI and the predictor) and input files in every format
``mxlstm train`` reads, or stdin.

Standard library and numpy only, like ``predictor.py`` beside it: copy both files next to
an export. :func:`read_inputs` turns a file (or ``-``, standard input) into raw inputs:

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
header naming the text field) unless given. Only regular files are opened (a FIFO or a
device is refused before it is opened); files above :data:`MAX_INPUT_BYTES` are refused.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import stat
import sys
import zipfile
import zlib

import numpy as np

MAX_INPUT_BYTES = 256 * 1024 * 1024  # per input file (and decompressed), see --max-input-mb
STDIN = "-"
FORMATS = ("npy", "npz", "ts", "idx", "csv", "tsv", "jsonl", "lines")
TEXT_FORMATS = ("csv", "tsv", "jsonl", "lines")
NUMERIC_FORMATS = ("npy", "npz", "ts", "idx", "csv", "lines")
IDX_IMAGES_MAGIC = 2051
FORMAT = "mxlstm-export"
FORMAT_VERSION = 1
WORD_RULE = "mxlstm-word-v1"
CHAR_RULE = "chars"


class PredictorError(ValueError):
    """Unusable model files or raw input; the message says which and why."""


class ModelFilesError(PredictorError):
    """Missing, damaged or mismatched exported files."""


class InputError(PredictorError):
    """Raw input the model cannot take (empty text, wrong feature count, non-numeric ...)."""


class Inputs(list):
    """``[(line or row number, raw input), ...]`` of one file, with ``name`` (the path or
    ``<stdin>``), ``format`` and ``where``: the location prefix of each input for messages."""

    def __init__(self, items, name: str, fmt: str, where: list[str]) -> None:
        super().__init__(items)
        self.name, self.format, self.where = name, fmt, where


# ----------------------------------------------------------------------------- meta.json
KNOWN_VERSIONS = (1,)
KINDS = ("sequence_classification", "text_classification", "regression", "tagging",
         "language_model")
CLASSIFIERS = ("sequence_classification", "text_classification", "tagging")


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not ... else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def validate_meta(meta, path: str = "meta.json") -> dict:
    """Check a loaded ``PREFIX-meta.json`` against the schema this predictor reads: the
    first problem raises :class:`ModelFilesError` ``"<path>: field <name>: ..."``."""
    def field(tree: dict, prefix: str, key: str, kinds, what: str, optional: bool = False,
              test=None):
        value = tree.get(key, ...)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if optional and value in (None, ...):
            return None
        ok = value is not ... and isinstance(value, kinds) and \
            (bool in kinds or not isinstance(value, bool)) and (test is None or test(value))
        if not ok:
            got = "missing" if value is ... else f"got {_show(value)}"
            raise ModelFilesError(f"{path}: field {prefix}{key}: expected {what}, {got}")
        return value

    def strings(v):
        return all(isinstance(x, str) for x in v)

    def count(v):
        return not isinstance(v, bool) and v >= 1

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFilesError(f"{path}: not an mxlstm export meta.json")
    version = field(meta, "", "format_version", int, "an integer format version "
                    f"({', '.join(map(str, KNOWN_VERSIONS))})")
    if version > FORMAT_VERSION:
        raise ModelFilesError(f"{path}: field format_version: {version} is newer than this "
                              f"predictor ({FORMAT_VERSION})")
    field(meta, "", "format_version", int, f"one of {KNOWN_VERSIONS}",
          test=lambda v: v in KNOWN_VERSIONS)
    kind = field(meta, "", "kind", str, f"one of {', '.join(KINDS)}", test=lambda v: v in KINDS)
    field(meta, "", "label_names", list, "a list of strings" + (
        " (one per class)" if kind in CLASSIFIERS else ""),
        test=lambda v: strings(v) and (bool(v) or kind not in CLASSIFIERS))
    field(meta, "", "streaming", bool, "true or false", optional=True)
    field(meta, "", "fingerprint", dict, "an object with params_sha256")
    field(meta["fingerprint"], "fingerprint.", "params_sha256", str, "a sha256 hex digest")
    spec = field(meta, "", "input", dict, "an object (names, type, dtype, ...)")
    names = field(spec, "input.", "names", list, "a list of graph input names starting "
                  "with 'data'", test=lambda v: strings(v) and v[:1] == ["data"])
    tokens = field(spec, "input.", "type", str, "'float' or 'tokens'",
                   test=lambda v: v in ("float", "tokens")) == "tokens"
    field(spec, "input.", "dtype", str, "a numpy dtype name such as float32 or int32",
          test=lambda v: v in ("float16", "float32", "float64", "int32", "int64"))
    features = field(spec, "input.", "features", int, "an integer >= 1 (features per step)",
                     optional=tokens, test=count)
    field(spec, "input.", "vocab_size", int, "an integer >= 1", optional=not tokens,
          test=count)
    for key in ("fixed_length", "sequence_length", "max_train_length"):
        field(spec, "input.", key, int, "null or an integer >= 1", optional=True, test=count)
    field(spec, "input.", "series_lengths", list, "null or [shortest, longest]",
          optional=True, test=lambda v: len(v) == 2 and all(isinstance(x, int) for x in v))
    states = field(spec, "input.", "states", list, "a list of {name, shape}")
    for k, state in enumerate(states):
        where = f"input.states[{k}]."
        if not isinstance(state, dict):
            raise ModelFilesError(f"{path}: field input.states[{k}]: expected an object "
                                  f"{{name, shape}}, got {_show(state)}")
        field(state, where, "name", str, "one of input.names", test=lambda v: v in names)
        field(state, where, "shape", list, "a list of integers with one 'N'", test=lambda v: (
            v.count("N") == 1 and all(d == "N" or (isinstance(d, int) and count(d))
                                      for d in v)))
    known = {"data", "valid_length"} | {s["name"] for s in states}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelFilesError(f"{path}: field input.names: unknown input {unknown[0]!r} "
                              f"(not data, valid_length or a state)")
    pre = field(meta, "", "preprocessing", dict, "an object")
    norm = field(pre, "preprocessing.", "normalization", dict, "null or {mean, std}",
                 optional=True)
    for key in ("mean", "std") if norm else ():
        field(norm, "preprocessing.normalization.", key, list, f"{features} numbers (one per "
              "feature)", test=lambda v: len(v) == features and all(
                  isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
    vocab = field(pre, "preprocessing.", "idx_to_token", list, "null or a list of strings",
                  optional=kind != "language_model", test=strings)
    tokenizer = field(pre, "preprocessing.", "tokenizer", dict, "an object {rule, level}",
                      optional=not (tokens and vocab))
    if tokenizer:
        field(tokenizer, "preprocessing.tokenizer.", "rule", str,
              f"{WORD_RULE!r} or {CHAR_RULE!r}", test=lambda v: v in (WORD_RULE, CHAR_RULE))
    for key in ("pad_id", "unk_id"):
        field(pre, "preprocessing.", key, int, "an integer id", optional=not vocab,
              test=lambda v: 0 <= v < max(len(vocab or ()), spec.get("vocab_size") or 0))
    field(pre, "preprocessing.", "truncate", int, "null or an integer >= 0", optional=True,
          test=lambda v: v >= 0)
    config = field(meta, "", "config", dict, "an object", optional=True) or {}
    data = field(config, "config.", "data", dict, "an object", optional=True) or {}
    field(data, "config.data.", "text_field", str, "a column name", optional=True)
    return meta


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
    """Linear interpolation of NaNs along time; edges take the nearest observed value."""
    for c in range(series.shape[1]):
        column = series[:, c]
        bad = np.isnan(column)
        if bad.all():
            raise InputError(f"{where}channel {c + 1}: all values missing")
        if bad.any():
            steps = np.arange(len(column))
            column[bad] = np.interp(steps[bad], steps[~bad], column[~bad])
    return series


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


# ----------------------------------------------------------------------------- bytes
_KINDS = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def _not_regular(path: str, mode: int) -> InputError:
    if stat.S_ISDIR(mode):
        return InputError(f"{path}: is a directory, expected a file")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return InputError(f"{path}: not a regular file ({kind}); give a file, or '-' for "
                      f"standard input")


def _too_big(name: str, size: str, limit: int) -> InputError:
    return InputError(f"{name}: {size} above the limit of {limit / 2 ** 20:g} MiB for an "
                      f"input (raise it with --max-input-mb)")


def read_input_bytes(path: str, max_bytes: int = MAX_INPUT_BYTES) -> tuple[str, bytes]:
    """``(name, bytes)`` of ``path`` or of standard input (``-``); anything but a regular
    file is refused without being opened, and so are files above ``max_bytes``."""
    path = os.fspath(path)
    if path == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise InputError("<stdin>: no standard input")
        data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _too_big("<stdin>", "more than that", max_bytes)
        if not data:
            raise InputError("<stdin>: empty input")
        return "<stdin>", data
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)
    if info.st_size > max_bytes:
        raise _too_big(path, f"{info.st_size} bytes,", max_bytes)
    if info.st_size == 0:
        raise InputError(f"{path}: empty file")
    try:  # O_NONBLOCK: should a FIFO replace the file after the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_big(path, "more than that", max_bytes)
    if not data:
        raise InputError(f"{path}: empty file")
    return path, data


def _gunzip(name: str, data: bytes, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{name}: cannot decompress ({err})") from None
    if len(out) > max_bytes:
        raise _too_big(name, "decompressed, more than that,", max_bytes)
    if not out:
        raise InputError(f"{name}: empty file (after decompression)")
    return out


def _decode(name: str, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(f"{name}:{line}: invalid UTF-8 byte 0x{data[err.start]:02x} at "
                         f"column {column} (a binary file?)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# ----------------------------------------------------------------------------- formats
def format_from_name(path: str) -> str | None:
    """The format of a file name (``.gz`` left out), or None (then: one item a line)."""
    name = os.path.basename(path).lower()
    name = name[:-3] if name.endswith(".gz") else name
    if "idx3-ubyte" in name or "idx3.ubyte" in name:
        return "idx"
    ext = os.path.splitext(name)[1].lstrip(".")
    return ext if ext in FORMATS and ext != "lines" else None


def _sniff(lines: list[str], text_model: bool, field: str) -> str:
    """The format of text read from standard input."""
    first = next((line for line in lines if line.strip()), "")
    if not text_model:
        return "ts" if any(x.strip().lower().startswith("@data") for x in lines) else "lines"
    try:
        if isinstance(json.loads(first), dict):
            return "jsonl"
    except ValueError:
        pass
    if field in [f.strip() for f in first.split("\t")]:
        return "tsv"
    if field in [f.strip() for f in next(csv.reader([first]), [])]:
        return "csv"
    return "lines"


def _binary_format(data: bytes) -> str | None:
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"PK\x03\x04"):
        return "npz"
    if len(data) >= 4 and int.from_bytes(data[:4], "big") == IDX_IMAGES_MAGIC:
        return "idx"
    return None


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

"""The input-validation layer every data reader goes through.

* **Regular files only.** :func:`check_regular_file` looks at ``os.stat`` before anything
  is opened: a directory, a named pipe (FIFO: opening it for reading would block for ever),
  a device such as ``/dev/zero`` or a socket is refused with one line naming the file.
  :func:`open_regular` opens with ``O_NONBLOCK`` and checks ``fstat`` again, so a file
  swapped for a FIFO between the two calls cannot block either.
* **A size cap** (``data.max_input_mb``, default :data:`DEFAULT_MAX_INPUT_MB`): a file larger
  than the cap on disk is refused before reading; a ``.gz`` file is decompressed in chunks
  and reading stops as soon as the decompressed bytes pass the cap (a gzip bomb costs at
  most the cap in memory). Readers get the current cap from :func:`max_input_bytes`;
  :func:`input_limit` sets it for a block (``mxlstm.tasks.prepare`` does, from the config).
* **Numbers are checked after the cast to float32** (:func:`float32_checked`): ``1e300`` or
  ``4e38`` are finite float64 numbers but become ``inf`` in float32.
* **Labels have one canonical spelling** (:func:`canonical_label`): ``1``, ``1.0``,
  ``"1"``, JSON ``1`` and ``1.0`` are all the class ``"1"``; JSON ``true`` / ``false`` and
  the words true / false in any case are ``"true"`` / ``"false"``; a label column that
  mixes booleans and numbers is refused (:func:`check_label_kinds`).
* **Numeric labels are mapped to the sorted set of their distinct values**
  (:func:`index_labels`), so one label ``2e9`` is one class, not ``2e9`` names.
* **Class sets a classifier can learn** (:func:`check_classes`): no empty set, at least two
  classes, not more classes than examples, not one class per example, at most
  :data:`MAX_CLASSES` classes.

Every refusal is a :class:`~mxlstm.errors.DataError` naming the file (and line / field
where known); the CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation

import numpy as np

from mxlstm.errors import DataError

DEFAULT_MAX_INPUT_MB = 1024
MB = 1 << 20
CHUNK = 1 << 20
MAX_CLASSES = 100_000
FLOAT32_MAX = float(np.finfo(np.float32).max)

_limit_bytes = DEFAULT_MAX_INPUT_MB * MB
_limit_mb = DEFAULT_MAX_INPUT_MB

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- size cap
def max_input_bytes() -> int:
    """The current cap in bytes on one input file (compressed and decompressed)."""
    return _limit_bytes


@contextlib.contextmanager
def input_limit(mb: int | float) -> Iterator[None]:
    """Set the cap to ``mb`` MiB (``data.max_input_mb``) for the ``with`` block."""
    global _limit_bytes, _limit_mb
    if not mb > 0:
        raise ValueError(f"the input size cap must be positive, got {mb}")
    old = _limit_bytes, _limit_mb
    _limit_bytes, _limit_mb = int(mb * MB), mb
    try:
        yield
    finally:
        _limit_bytes, _limit_mb = old


def _cap_text() -> str:
    return f"data.max_input_mb={_limit_mb:g}"


def _too_big(what: str) -> str:
    return (f"{what} the input size cap of {_limit_mb:g} MB ({_cap_text()}; raise the key to "
            f"read it)")


# --------------------------------------------------------------------------- file kinds
def _kind(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "is a character device"
    if stat.S_ISBLK(mode):
        return "is a block device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def special_file_problem(path: PathLike) -> str | None:
    """``'is a named pipe (FIFO)'`` etc. for an existing path that is neither a regular file
    nor a directory; None otherwise (missing files and directories are left to the caller's
    own messages). Never opens the file."""
    try:
        mode = os.stat(os.fspath(path)).st_mode
    except OSError:
        return None
    return None if stat.S_ISDIR(mode) else _kind(mode)


def check_regular_file(path: PathLike) -> os.stat_result:
    """Refuse anything but an existing regular file within the size cap, without opening it.

    Raises
    ------
    DataError
        ``file not found``, ``is a directory, expected a file``, ``is a named pipe (FIFO),
        expected a regular file`` (likewise devices and sockets), ``permission denied``, or
        a file larger than the cap.
    """
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError("file not found", path=path) from None
    except PermissionError:
        raise DataError("permission denied", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read file ({err.strerror or err})", path=path) from None
    kind = _kind(info.st_mode)
    if kind == "is a directory":
        raise DataError("is a directory, expected a file", path=path)
    if kind is not None:
        raise DataError(f"{kind}, expected a regular file", path=path)
    if info.st_size > _limit_bytes:
        raise DataError(_too_big(f"file of {info.st_size / MB:.1f} MB is larger than"), path=path)
    return info


def open_regular(path: PathLike):
    """Open a regular file for binary reading (see :func:`check_regular_file`).

    The file is opened non-blocking and checked again with ``fstat`` (a FIFO put in its
    place after the first check cannot block), then switched back to blocking reads.
    """
    path = os.fspath(path)
    check_regular_file(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except PermissionError:
        raise DataError("permission denied", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read file ({err.strerror or err})", path=path) from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise DataError(f"{kind}, expected a regular file", path=path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: PathLike) -> bytes:
    """All bytes of a regular file; names ending in ``.gz`` are decompressed in chunks.

    Raises
    ------
    DataError
        As :func:`check_regular_file`; when the data (decompressed for ``.gz``) passes the
        cap; when a ``.gz`` file is not gzip or is damaged.
    """
    path = os.fspath(path)
    limit = _limit_bytes
    with open_regular(path) as raw:
        try:
            if not path.endswith(".gz"):
                data = raw.read(limit + 1)
                if len(data) > limit:
                    raise DataError(_too_big("holds more than"), path=path)
                return data
            parts, total = [], 0
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                while True:
                    chunk = unzipped.read(min(CHUNK, limit + 1 - total))
                    if not chunk:
                        break
                    parts.append(chunk)
                    total += len(chunk)
                    if total > limit:
                        raise DataError(_too_big("decompresses to more than"), path=path)
            return b"".join(parts)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"cannot read file ({err})", path=path) from None
        except MemoryError:
            raise DataError(_too_big("needs more memory than"), path=path) from None


def check_declared_size(nbytes: int, path: PathLike, field: str | None = None) -> None:
    """Refuse data whose header declares more bytes than the cap (before allocating)."""
    if nbytes > _limit_bytes:
        raise DataError(_too_big(f"declares {nbytes / MB:.1f} MB of data, more than"), path=path,
                        field=field)


# --------------------------------------------------------------------------- numbers
def float32_checked(values, path: PathLike | None = None, line: int | None = None,
                    field: str | None = None, where: str = "",
                    allow_nan: bool = False) -> np.ndarray:
    """Cast ``values`` to float32 and refuse any value that is not finite *after* the cast.

    ``1e300`` passes a float64 finiteness check but is ``inf`` in float32: the error names
    it, with ``where`` (e.g. ``"in sequence 3"``) and its position. With ``allow_nan`` NaN
    stays (a missing value the caller wants kept); infinities never pass.
    """
    source = np.asarray(values)
    with np.errstate(over="ignore", invalid="ignore"):
        out = source.astype(np.float32)
    good = np.isfinite(out)
    if allow_nan:
        good |= np.isnan(out) & np.isnan(source.astype(np.float64))
    if good.all():
        return out
    flat = int(np.flatnonzero(~good.reshape(-1))[0])
    value = float(source.reshape(-1)[flat])
    position = np.unravel_index(flat, source.shape) if source.ndim else ()
    if source.ndim == 1:
        at = f" at position {position[0] + 1}"
    elif source.ndim == 2:
        at = f" at step {position[0] + 1}, channel {position[1] + 1}"
    elif source.ndim:
        at = f" at index {tuple(int(i) for i in position)}"
    else:
        at = ""
    at = (f" {where}" if where else "") + at
    if np.isfinite(value):
        message = (f"value {value:g}{at} does not fit float32 (largest magnitude "
                   f"{FLOAT32_MAX:.4g})")
    else:
        message = f"non-finite value {value:g}{at}"
    raise DataError(message, path=path, line=line, field=field)


# --------------------------------------------------------------------------- labels
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BOOLEANS = ("false", "true")
_INTEGER_DIGITS = 30  # integral numbers up to ~1e30 are written out in full


def _canonical_decimal(number: Decimal) -> str:
    if number == 0:
        return "0"
    if number == number.to_integral_value() and number.adjusted() <= _INTEGER_DIGITS:
        return str(int(number))
    return str(number.normalize())


def canonical_label(value) -> str:
    """The one spelling of a class label.

    * numbers (Python / numpy ints and floats, JSON numbers, or strings such as ``"1.0"``,
      ``"+1"``, ``"1e2"``): integral values become the integer string (``1``, ``1.0``,
      ``"1"`` -> ``"1"``; ``-0`` -> ``"0"``), others their shortest exact decimal
      (``"0.50"`` -> ``"0.5"``);
    * booleans (JSON ``true`` / ``false``, numpy bools, the words in any case) ->
      ``"true"`` / ``"false"``;
    * any other string -> itself without surrounding whitespace (case is kept).

    Raises
    ------
    ValueError
        For a non-finite number (NaN, infinity).
    """
    if isinstance(value, bool | np.bool_):
        return _BOOLEANS[bool(value)]
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            raise ValueError(f"non-finite label {value}")
        return _canonical_decimal(Decimal(repr(float(value))))
    text = str(value).strip()
    if text.lower() in _BOOLEANS:
        return text.lower()
    if _NUMBER.fullmatch(text):
        try:
            return _canonical_decimal(Decimal(text))
        except InvalidOperation:  # pragma: no cover - the regex only lets numbers through
            return text
    return text


def is_numeric_label(label: str) -> bool:
    """Whether a canonical label is a number."""
    return bool(_NUMBER.fullmatch(label))


def check_label_kinds(labels: Sequence[str], path: PathLike | None = None,
                      lines: Sequence[int] | None = None, field: str | None = "label") -> None:
    """Refuse a label column that mixes booleans (``true``/``false``) and numbers.

    ``true`` next to ``1`` is ambiguous (the same class or two?): the file must use one form.
    """
    first_bool = next((i for i, v in enumerate(labels) if v in _BOOLEANS), None)
    if first_bool is None:
        return
    first_number = next((i for i, v in enumerate(labels) if is_numeric_label(v)), None)
    if first_number is None:
        return
    line_of = (lambda i: lines[i]) if lines is not None else (lambda i: i + 1)
    later = max(first_bool, first_number)
    raise DataError(f"labels mix booleans and numbers ({labels[first_bool]!r} on line "
                    f"{line_of(first_bool)}, {labels[first_number]!r} on line "
                    f"{line_of(first_number)}): write every label one way", path=path,
                    line=line_of(later) if lines is not None else None, field=field)


def index_labels(values: np.ndarray, path: PathLike | None = None,
                 field: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Map numeric labels to ``(class ids (N,) int64, names)``.

    ``names`` are the canonical spellings of the sorted distinct values, and ``ids`` index
    them: memory is proportional to the number of distinct labels, never to their size
    (one label ``2e9`` is one class). Booleans give ``'false'`` / ``'true'``.
    """
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = values[~np.isfinite(values)][0]
        raise DataError(f"non-finite label {bad}", path=path, field=field)
    distinct, ids = np.unique(values, return_inverse=True)
    if len(distinct) > MAX_CLASSES:
        raise DataError(f"{len(distinct)} distinct labels, more than {MAX_CLASSES} classes "
                        f"(regression targets or ids?)", path=path, field=field)
    names = [canonical_label(v.item() if hasattr(v, "item") else v) for v in distinct]
    if len(set(names)) != len(names):  # e.g. 1 and 1.0000000000000001 in float64
        merged = {}
        for name in names:
            merged.setdefault(name, len(merged))
        remap = np.array([merged[n] for n in names], dtype=np.int64)
        return remap[ids].astype(np.int64), list(merged)
    return ids.astype(np.int64), names


def check_classes(label_ids: np.ndarray | Sequence[int], names: Sequence[str],
                  path: PathLike | None = None, what: str = "examples",
                  field: str | None = "label") -> None:
    """Refuse class sets a classifier cannot learn from (training data only).

    Refused: no examples; one class; more classes (``names``, declared ones included) than
    examples; every example a class of its own (three or more examples: the label column
    looks like an id); more than :data:`MAX_CLASSES` classes.
    """
    ids = np.asarray(label_ids).reshape(-1)
    n, k = len(ids), len(names)
    if n == 0:
        raise DataError(f"no {what}", path=path)
    if k > MAX_CLASSES:
        raise DataError(f"{k} classes, more than the {MAX_CLASSES} a classifier here takes",
                        path=path, field=field)
    seen = np.unique(ids)
    if len(seen) < 2:
        name = names[int(seen[0])] if k else str(seen[0])
        raise DataError(f"only one class ({name!r}) in {n} {what}: a classifier needs at "
                        f"least 2 (check data.label_field / the label column)", path=path,
                        field=field)
    if k > n:
        raise DataError(f"more classes ({k}) than {what} ({n})", path=path, field=field)
    if len(seen) == n and n >= 3:
        raise DataError(f"every one of the {n} {what} has a label of its own ({n} classes): "
                        f"is the label column an id?", path=path, field=field)

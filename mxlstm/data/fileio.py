"""Low-level file reading shared by the data readers: bytes, UTF-8 text, embedded files.

Every failure is reported as a :class:`~mxlstm.errors.DataError` naming the file and,
where it can be located, the 1-based line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator

from mxlstm.data.validate import check_regular_file, read_limited
from mxlstm.errors import DataError
from mxlstm.preprocess import sha256_file

FILES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")

PathLike = str | os.PathLike
_reads: list[tuple[str, str]] | None = None  # (file, sha256) while recording_reads() runs


@contextlib.contextmanager
def recording_reads() -> Iterator[list[tuple[str, str]]]:
    """Collect ``(file, sha256 of its content)`` of every file read inside the block.

    Embedded files are named ``embedded:<relative path>``, others by absolute path; a run
    stores the list to refuse a resume on changed data.
    """
    global _reads
    outer, _reads = _reads, []
    try:
        yield _reads
    finally:
        _reads = outer


def note_file(path: PathLike) -> None:
    """Record ``path`` for :func:`recording_reads` (for readers that open files themselves,
    such as ``np.load``)."""
    if _reads is None:
        return
    try:
        digest = sha256_file(path)
    except OSError:  # unreadable: the digest of no content
        digest = hashlib.sha256(b"").hexdigest()
    _record(os.fspath(path), digest)


def _note_read(path: str, data: bytes) -> None:
    if _reads is not None:
        _record(path, hashlib.sha256(data).hexdigest())


def _record(path: str, digest: str) -> None:
    absolute = os.path.abspath(path)
    if absolute.startswith(FILES_DIR + os.sep):
        name = "embedded:" + os.path.relpath(absolute, FILES_DIR).replace(os.sep, "/")
    else:
        name = absolute
    entry = (name, digest)
    if entry not in _reads:
        _reads.append(entry)


def embedded_path(relative: str) -> str:
    """Return the absolute path of a file shipped in ``mxlstm/data/files``.

    Parameters
    ----------
    relative : str
        Path relative to ``mxlstm/data/files``, e.g. ``"uea/GunPoint_TRAIN.ts"``.

    Raises
    ------
    DataError
        If no such embedded file exists.
    """
    path = os.path.join(FILES_DIR, *relative.replace("\\", "/").split("/"))
    if not os.path.isfile(path):
        raise DataError("no such embedded data file", path=path)
    return path


def require_file(path: PathLike) -> None:
    """Raise the :class:`DataError` :func:`read_bytes` would give if ``path`` is missing, a
    directory, a FIFO, a device or larger than the size cap (so that readers can report it
    before guessing a format from the name). Never opens the file."""
    check_regular_file(path)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole regular file; names ending in ``.gz`` are decompressed.

    Goes through :mod:`mxlstm.data.validate`: FIFOs, devices and directories are refused
    before opening, and reading stops past the size cap (``data.max_input_mb``), for
    ``.gz`` files on the decompressed bytes.

    Raises
    ------
    DataError
        If the file is missing, not a regular file, over the cap, or cannot be read /
        decompressed.
    """
    data = read_limited(path)
    _note_read(os.fspath(path), data)
    return data


def decode_text(raw: bytes, path: PathLike | None = None) -> str:
    """Decode UTF-8 bytes (a leading BOM is dropped) and keep line numbers for errors.

    Raises
    ------
    DataError
        On the first byte that is not valid UTF-8, naming its line and column.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"invalid UTF-8 byte 0x{raw[err.start]:02x} at column {column}", path=path, line=line
        ) from None


def read_text(path: PathLike) -> str:
    """Read a UTF-8 text file (optionally ``.gz``) into one string."""
    return decode_text(read_bytes(path), path)


def read_lines(path: PathLike, allow_empty: bool = False) -> list[str]:
    """Read a UTF-8 text file into lines split on ``\\n`` only (``\\r`` stripped).

    Line ``i`` of the file is element ``i - 1`` of the result.

    Raises
    ------
    DataError
        As :func:`read_bytes` / :func:`decode_text`, or ``empty file`` when the file holds
        only whitespace and ``allow_empty`` is false.
    """
    text = read_text(path)
    if not allow_empty and not text.strip():
        raise DataError("empty file", path=path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]

"""Bytes of one input file or of standard input, for the standalone predictor: only regular
files are opened (a FIFO or a device is refused before it is opened), files above
:data:`MAX_INPUT_BYTES` are refused, ``.gz`` is decompressed, text is decoded, and the
format is found from the name or sniffed from the content.

Standard library only, like ``predictor.py`` beside it (see there).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import stat
import sys
import zlib

try:  # inside the mxlstm package, or copied beside predictor.py
    from .predictor_meta import InputError
except ImportError:
    from predictor_meta import InputError  # noqa: I001

MAX_INPUT_BYTES = 256 * 1024 * 1024  # per input file (and decompressed), see --max-input-mb
STDIN = "-"
FORMATS = ("npy", "npz", "ts", "idx", "csv", "tsv", "jsonl", "lines")
TEXT_FORMATS = ("csv", "tsv", "jsonl", "lines")
NUMERIC_FORMATS = ("npy", "npz", "ts", "idx", "csv", "lines")
IDX_IMAGES_MAGIC = 2051


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

"""Atomic file writes: what a checkpoint, a report or a log rewrite needs so that a crash
or a full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from mxlstm.data.fileio import PathLike


def fsync_path(path: PathLike, directory: bool = False) -> None:
    """fsync a file (or, with ``directory``, a directory where the OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if directory:  # e.g. Windows cannot open directories
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems refuse fsync on directories
        if not directory or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: Path, data: bytes) -> None:
    """Create (or truncate) ``path`` with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def as_bytes(data: bytes | str) -> bytes:
    """``data`` as bytes (str as UTF-8)."""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def remove_tree(path: Path) -> None:
    """Remove the directory ``path`` if there is one."""
    if path.is_dir():
        shutil.rmtree(path)


def write_atomic(path: PathLike, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically (str is written as UTF-8).

    The data go to a temp file in the same directory, which is flushed, fsynced and
    ``os.replace``-d onto ``path``; then the directory is fsynced.  On any exception the temp
    file is removed and the exception re-raised, so ``path`` keeps its old content (or stays
    absent) when, for example, the disk is full.  An existing file's permissions are kept.
    """
    path = Path(path)
    payload = as_bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        write_all(fd, payload)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent, directory=True)

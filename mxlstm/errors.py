"""Error types of mxlstm.

Every error a user can cause with bad input is a :class:`MxlstmError`; the CLI prints
its message on one line and exits with status 2 (no traceback unless ``--debug``).
"""

from __future__ import annotations

import os


class MxlstmError(Exception):
    """Base class for errors caused by user input (data, config, model files)."""


class DataError(MxlstmError):
    """Malformed or unusable data, located by file, line and field where known.

    ``str(err)`` reads ``"<path>:<line>: field <field>: <message>"`` with absent parts left out.
    """

    def __init__(
        self,
        message: str,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        if field is not None:
            where += f"field {field}: "
        super().__init__(where + message)


class ConfigError(MxlstmError):
    """An unknown configuration key or a value of the wrong type or range."""


class ModelFileError(MxlstmError):
    """Missing, mismatched or foreign model / checkpoint / export files."""


class TrainingError(MxlstmError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


def error_reason(err: BaseException, path: str | os.PathLike | None = None,
                 limit: int = 300) -> str:
    """One line that carries the real cause of ``err`` (for messages of the CLI).

    MXNet errors are multi-line (``Traceback (most recent call last):``, a C++ file and
    line, then ``MXNetError: Check failed: ...``): the line with the cause is kept, without
    its prefix. ``OSError`` gives its ``strerror``. A failed write of MXNet on a full disk
    says only "FileStream.Write incomplete"; when the file system of ``path`` has no space
    left the reason is "no space left on device".
    """
    import errno

    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return "no space left on device"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[:limit]
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    cause = ""
    for line in lines:
        if "Check failed" in line or line.startswith(("MXNetError:", "Error:")):
            cause = line
    if not cause:
        useful = [line for line in lines if not line.startswith(("Traceback", "File \"",
                                                                  "Stack trace", "[bt]"))]
        cause = useful[-1] if useful else (lines[-1] if lines else type(err).__name__)
    for prefix in ("MXNetError:", "Error:"):
        cause = cause.removeprefix(prefix).strip()
    cause = cause.replace("std: :", "std::")
    if path is not None and ("Write incomplete" in cause or "fwrite" in cause):
        try:
            stats = os.statvfs(os.path.dirname(os.fspath(path)) or ".")
            if stats.f_bavail * stats.f_frsize < 1 << 20:
                return "no space left on device"
        except OSError:
            pass
    return cause[:limit]

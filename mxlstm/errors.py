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

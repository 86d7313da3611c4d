"""What serving needs beside mxlstm, checked before anything starts: the ``[serve]`` extra
(multi-model-server, model-archiver) and Java on PATH; each absence is one line."""

from __future__ import annotations

import importlib.util
import os
import shutil

from mxlstm.errors import MxlstmError

SERVE_INSTALL = "pip install 'mxlstm[serve]' (multi-model-server==1.1.11 " \
                "model-archiver==1.0.3)"


class ServeError(MxlstmError):
    """Serving cannot start or go on: a missing package or Java, a bad archive, a port."""


def need_archiver(what: str = "--mar") -> None:
    """ServeError unless model-archiver is importable."""
    if importlib.util.find_spec("model_archiver") is None:
        raise ServeError(f"{what} needs model-archiver: {SERVE_INSTALL}")


def java_path() -> str | None:
    """The ``java`` MMS will run: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def need_server() -> str:
    """The java executable; ServeError unless multi-model-server and Java are there."""
    if importlib.util.find_spec("mms") is None:
        raise ServeError(f"mxlstm serve needs Multi Model Server: {SERVE_INSTALL}")
    java = java_path()
    if java is None:
        where = "$JAVA_HOME/bin/java" if os.environ.get("JAVA_HOME") else "java on PATH"
        raise ServeError(f"mxlstm serve needs Java 8 or newer ({where} not found): install "
                         f"a JRE, e.g. apt-get install openjdk-17-jre-headless")
    return java


def missing() -> str | None:
    """Why serving cannot run here (for tests that skip), or None."""
    try:
        need_server()
        need_archiver()
    except ServeError as err:
        return str(err)
    return None

"""What the serve tests share: tiny exports with their archives (the tiny runs of
``tests/deploy/test_predictor.py``, shared through the session's base temp dir), raw
inputs per model, a running ``mxlstm serve`` subprocess, and the processes it marked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from test_predictor import exported  # noqa: E402

from mxlstm.data.sources import load_digits  # noqa: E402
from mxlstm.serve.archive import write_archive  # noqa: E402
from mxlstm.serve.needs import missing  # noqa: E402
from mxlstm.serve.server import MARKER_ENV  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MXLSTM = [sys.executable, "-m", "mxlstm"]
TEXTS = ["a fine film", "Hello, world 有趣 新闻!", "dull and awful, a poor film indeed",
         "zzqx unknownword"]
CONTEXTS = ["it is a truth universally acknowledged that", "she was", "Anne"]


def needs_server() -> None:
    """Skip the calling test module unless the [serve] extra and Java are there."""
    why = missing()
    if why:
        pytest.skip(why, allow_module_level=True)


def digit_rows(n: int = 4) -> list[list[list[float]]]:
    """Raw digit images as float rows ``(T, 8)`` of varied lengths."""
    data = load_digits()
    return [data.sequences[k][:t].tolist() for k, t in zip(range(n), (8, 5, 3, 8, 6, 7))]


def archived(base: Path, name: str) -> Path:
    """``PREFIX.mar`` of the tiny export ``name`` (digits, text, lm, ...), made once."""
    import importlib.util

    if importlib.util.find_spec("model_archiver") is None:
        pytest.skip("model-archiver is not installed (the [serve] extra)")
    prefix = exported(base, name)
    mar = Path(f"{prefix}.mar")
    if not mar.exists():
        write_archive(prefix)
    return mar


def marked(marker: str) -> list[int]:
    """Live processes whose environment carries the server's marker."""
    found, needle = [], f"{MARKER_ENV}={marker}".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                    stat = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                    if stat[0] != "Z":
                        found.append(int(name))
            except OSError:
                pass
    return found


def wait_gone(marker: str, seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return marked(marker)


class Served:
    """``mxlstm serve`` in a subprocess (its own session, so tests can signal it)."""

    def __init__(self, archives: list[Path], run_dir: Path, *flags: str) -> None:
        self.run_dir = run_dir
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}
        self.proc = subprocess.Popen([*MXLSTM, "serve", "--model", *map(str, archives),
                                      "--port", "0", "--run-dir", str(run_dir), *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=REPO, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"mxlstm serve ended: {self.proc.stderr.read()[-2000:]}")
        self.info = json.loads(line)
        self.marker = json.loads((run_dir / "server.json").read_text())["marker"]

    def url(self, model: str) -> str:
        return self.info["models"][model]

    def stop(self) -> None:
        if self.proc.poll() is None:
            subprocess.run([*MXLSTM, "serve", "--stop", "--run-dir", str(self.run_dir)],
                           capture_output=True, timeout=60)
            self.proc.wait(timeout=60)
        wait_gone(self.marker)

"""What the e2e tests share: the tiny training flags, trained runs made on first use,
snapshots of a directory, and builders of (bad) input files."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mxlstm.cli import main

TINY = ["--epochs", "1", "--set", "train.max_batches=2", "--set", "model.hidden_size=8",
        "--set", "train.progress=false"]
REPO = Path(__file__).resolve().parents[2]



def _drop_run_log_handlers() -> None:
    """Remove the stderr / train.log handlers ``mxlstm train`` installs on the root logger
    (in one process they would outlive the test that made them)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_mxlstm", False):
            root.removeHandler(handler)
            handler.close()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def train(task: str, tmp: Path, *extra: str) -> list[str]:
    return ["train", "--task", task, "--out", str(tmp / "run"), *TINY, *extra]


# --------------------------------------------------------------------------- trained runs
def _reviews(n: int = 80) -> str:
    good, bad = ["good", "great", "fine", "lovely", "superb"], ["bad", "awful", "dull", "poor"]
    rows = [f"a {good[i % 5]} film, part {i}\tpos" if i % 2 else
            f"a {bad[i % 4]} film, part {i}\tneg" for i in range(n)]
    return "text\tlabel\n" + "\n".join(rows) + "\n"


class Runs:
    """Tiny trained model directories, made once per module on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._made: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._made:
            out = self.base / name
            if name == "digits":
                args = ["train", "--task", "digits", "--out", str(out), *TINY]
            else:
                data = write(self.base / "reviews.tsv", _reviews())
                args = ["train", "--task", "text", "--data", str(data), "--out", str(out),
                        *TINY, "--set", "model.embed_size=8"]
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                assert main(args) == 0
            _drop_run_log_handlers()
            self._made[name] = out
        return self._made[name]

    def copy(self, name: str, dest: Path, edit: Callable[[Path], object] | None = None) -> Path:
        """A copy of run ``name`` at ``dest``, changed by ``edit(dest)``."""
        shutil.copytree(self.get(name), dest)
        if edit is not None:
            edit(dest)
        return dest


# --------------------------------------------------------------------------- input files
TS_HEAD = ("# toy set\n@problemName toy\n@univariate true\n@equalLength true\n@seriesLength 4\n"
           "@classLabel true a b\n@data\n")
TS_ROWS = "".join(f"{k},{k + 1},{k + 2},{k + 3}:{'ab'[k % 2]}\n" for k in range(12))
TS_2D = "@problemName toy\n@dimensions 2\n@classLabel true a b\n@data\n"


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def balanced(n: int, t: int, c: int) -> dict:
    rng = np.random.RandomState(0)
    return {"x": rng.rand(n, t, c).astype(np.float32), "y": np.arange(n) % 2}


def idx_images(n: int = 10, rows: int = 8, cols: int = 8, data: int | None = None) -> bytes:
    body = bytes(range(256)) * (n * rows * cols // 256 + 1)
    size = n * rows * cols if data is None else data
    return b"".join(v.to_bytes(4, "big") for v in (2051, n, rows, cols)) + body[:size]


def idx_labels(n: int = 10) -> bytes:
    return (2049).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(k % 2 for k in range(n))


def series_csv(labels: str, n: int = 12) -> str:
    return "".join(f"{k},{k / 2},{k / 3},{labels[k % len(labels)]}\n" for k in range(n))


def truncated_npz(tmp: Path) -> Path:
    whole = npz(tmp / "whole.npz", **balanced(40, 6, 2)).read_bytes()
    return write(tmp / "cut.npz", whole[: len(whole) // 2])


def toml(tmp: Path, text: str) -> list[str]:
    path = write(tmp / "run.toml", text)
    return ["train", "--task", "digits", "--config", str(path), "--out", str(tmp / "run"), *TINY]

"""The exports the predict e2e tests read (tiny runs trained and exported on first use),
snapshots that never read a FIFO, and the standalone predictor in a fresh process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np
from e2e_inputs import TINY, _drop_run_log_handlers, _reviews, write

from mxlstm.cli import main
from mxlstm.data.fileio import embedded_path, read_text
from mxlstm.deploy import predictor as standalone
from mxlstm.deploy.ship import ship_predictor

REPO = Path(__file__).resolve().parents[2]
DEPLOY = Path(standalone.__file__).parent
TIMEOUT = 90


# --------------------------------------------------------------------------- exports
def _uni_csv(n: int = 40, t: int = 6) -> str:
    rng = np.random.RandomState(0)
    return "".join(",".join(f"{v:.3f}" for v in rng.rand(t)) + f",{k % 2}\n" for k in range(n))


class Exports:
    """Tiny runs and their exports, made on first use: ``digits`` (8 features, 10 classes),
    ``uni`` (univariate CSV series of 6 steps, labels 0/1), ``text`` (TSV reviews),
    ``lm`` (a 500-token language model)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._made: dict[str, Path] = {}

    def run(self, name: str) -> Path:
        return self.base / "runs" / name

    def prefix(self, name: str) -> Path:
        if name not in self._made:
            out, args = self.run(name), []
            if name == "uni":
                args = ["--data", str(write(self.base / "uni.csv", _uni_csv()))]
            elif name == "text":
                args = ["--data", str(write(self.base / "reviews.tsv", _reviews())),
                        "--set", "model.embed_size=8"]
            elif name == "lm":
                corpus = read_text(embedded_path("austen/persuasion.txt.gz"))[:40000]
                args = ["--data", str(write(self.base / "corpus.txt", corpus)), "--set",
                        "data.max_vocab=500", "--set", "model.embed_size=8", "--set",
                        "train.eval_batch_size=8"]
            task = "digits" if name == "uni" else name
            prefix = self.base / "exports" / name
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                assert main(["train", "--task", task, "--out", str(out), *TINY, *args]) == 0
                _drop_run_log_handlers()
                assert main(["export", "--model", str(out), "--out", str(prefix)]) == 0
            self._made[name] = prefix
        return self._made[name]

    def edited(self, name: str, dest: Path, edit: Callable[[dict], object]) -> Path:
        """A copy of export ``name`` at prefix ``dest`` whose meta.json ``edit`` changed."""
        source = self.prefix(name)
        for suffix in ("-symbol.json", "-0000.params"):
            shutil.copy(str(source) + suffix, str(dest) + suffix)
        meta = json.loads(Path(str(source) + "-meta.json").read_text())
        edit(meta)
        Path(str(dest) + "-meta.json").write_text(json.dumps(meta))
        return dest


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root``: the sha256 of a file (size and mtime above 1 MB, e.g. a
    sparse file), ``dir`` or ``other`` (a FIFO is never read)."""
    found = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_fifo() or not (p.is_file() or p.is_dir()):
            found[str(p)] = ("other", st.st_mode)
        elif p.is_dir():
            found[str(p)] = "dir"
        elif st.st_size > 2 ** 20:
            found[str(p)] = (st.st_size, st.st_mtime_ns)
        else:
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MXNET_ENGINE_TYPE", None)  # setting it makes MXNet log a line of its own
    return env


# The standalone predictor as a script in a fresh `python -I -S -B` process (no .pyc): only
# the copied directory and site-packages (for mxnet and numpy) are on the path.
RUN_SCRIPT = ("import runpy, sys; sys.path.append(sys.argv[1]); sys.argv = sys.argv[2:]; "
              "sys.path.insert(0, sys.argv[0].rsplit('/', 1)[0]); "
              "runpy.run_path(sys.argv[0], run_name='__main__')")


def standalone_command(deploy: Path) -> list[str]:
    if not (deploy / "predictor.py").exists():
        ship_predictor(deploy)
    return [sys.executable, "-I", "-S", "-B", "-c", RUN_SCRIPT, sysconfig.get_paths()["purelib"],
            str(deploy / "predictor.py")]


def run(command: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, stdin=None if stdin is not None else
                          subprocess.DEVNULL, capture_output=True, cwd=REPO, env=_env(),
                          timeout=TIMEOUT)

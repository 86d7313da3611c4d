"""Every `mxlstm ...` command of the README and the quickstart runs as written, in a
shortened form (tiny models, two batches an epoch, small synthetic sets), in the order the
page gives, from a fresh working directory. A command the pages add must be run here or
be named in SKIPPED with the test that covers it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import _clean_logging, _drop_run_log_handlers, _reviews

from mxlstm.cli import main

__all__ = ["_clean_logging"]
ROOT = Path(__file__).resolve().parents[2]
SHORT = {"*": ["--set", "train.max_batches=2", "--set", "model.hidden_size=8",
               "--set", "train.progress=false", "--epochs", "1"],
         "adding": ["--set", "data.num_train=64", "--set", "data.num_eval=32"],
         "copy": ["--set", "data.num_train=64", "--set", "data.num_eval=32"],
         "lm": ["--set", "data.max_vocab=500", "--set", "model.embed_size=8"]}
SKIPPED = {"launch": "tests/e2e/test_launch.py runs a launch job",
           "bench": "tests/test_bench.py and tests/test_bench_e2e.py run the benchmarks"}


def commands(page: str) -> list[str]:
    """The mxlstm command lines of the page's bash blocks (continuations joined, comments
    and shell redirections dropped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / page).read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].split(" > ")[0].split(" < ")[0].strip()
            if line.startswith((".venv/bin/mxlstm ", "mxlstm ")):
                found.append(line.split("mxlstm ", 1)[1])
    return found


def shortened(argv: list[str]) -> list[str]:
    if argv[0] != "train" or "--resume" in argv:
        return argv
    task = argv[argv.index("--task") + 1]
    return [*argv, *SHORT["*"], *SHORT.get(task, [])]


def own_data(cwd: Path) -> None:
    """The files the pages' examples read: the user's own data."""
    (cwd / "my.tsv").write_text(_reviews())
    (cwd / "reviews.tsv").write_text(_reviews().replace("text\tlabel", "review\tstars", 1))
    uea = ROOT / "mxlstm" / "data" / "files" / "uea"
    shutil.copy(uea / "GunPoint_TRAIN.ts", cwd / "mine_TRAIN.ts")
    shutil.copy(uea / "GunPoint_TEST.ts", cwd / "mine_TEST.ts")
    from mxlstm.data.sources import load_digits

    rows = np.stack([np.asarray(load_digits()[i][0], dtype=np.float32) for i in range(3)])
    np.save(cwd / "rows.npy", rows)


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_every_command_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own_data(tmp_path)
    ran = 0
    for line in commands(page):
        argv = shlex.split(line)
        if argv[0] in SKIPPED:
            continue
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(shortened(argv))
        _drop_run_log_handlers()
        assert code == 0, f"{page}: `mxlstm {line}` exited {code}:\n{err.getvalue()[-2000:]}"
        if argv[0] in ("train", "evaluate", "export", "predict", "report"):
            json.loads(out.getvalue().splitlines()[0])  # scripts get JSON on stdout
        ran += 1
    assert ran >= (10 if page == "README.md" else 3), ran


def test_skipped_commands_are_the_named_ones():
    verbs = {shlex.split(line)[0] for page in ("README.md", "docs/quickstart.md")
             for line in commands(page)}
    assert verbs - {"train", "evaluate", "config", "export", "predict", "report"} <= set(SKIPPED)

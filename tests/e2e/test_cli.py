"""End to end through the command line: every task trains, checkpoints and evaluates on a
tiny budget; bad configuration gives one line and exit 2; a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mxlstm.cli import main
from mxlstm.training.checkpoint import find_checkpoint

TINY = ["--set", "train.progress=false", "--set", "model.hidden_size=16", "--epochs", "1",
        "--set", "train.max_batches=3"]
TASK_FLAGS = {
    "digits": [],
    "vowels": ["--set", "data.num_buckets=3"],
    "uea": ["--set", "data.name=ItalyPowerDemand"],
    "text": ["--set", "model.embed_size=16", "--set", "data.max_vocab=2000",
             "--set", "train.ensemble=1"],  # one model's layout (the preset averages 3)
    "lm": ["--set", "model.embed_size=16", "--set", "data.max_vocab=500",
           "--set", "train.eval_batch_size=256", "--set", "data.bptt=20"],
    "adding": ["--set", "data.num_train=256", "--set", "data.num_eval=64",
               "--set", "data.seq_length=20"],
    "copy": ["--set", "data.num_train=256", "--set", "data.num_eval=64",
             "--set", "data.seq_length=10", "--set", "data.copy_length=3"],
    "series-regression": [],
}
MAIN_METRIC = {"digits": "accuracy", "vowels": "accuracy", "uea": "accuracy",
               "text": "accuracy", "lm": "perplexity", "adding": "mse", "copy": "accuracy",
               "series-regression": "rmse"}


def _baseline_values(tree):
    """The numbers of a report's baselines (nested per model), and its skip notes."""
    for value in tree.values():
        if isinstance(value, dict):
            yield from _baseline_values(value)
        else:
            yield value


@pytest.mark.parametrize("task", list(TASK_FLAGS))
def test_every_task_trains_checkpoints_and_evaluates(task, tmp_path, capsys):
    out = tmp_path / task
    assert main(["train", "--task", task, "--out", str(out), *TINY, *TASK_FLAGS[task]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metric = MAIN_METRIC[task]
    assert np.isfinite(printed["test"][metric])
    values = list(_baseline_values(printed["baseline"]))
    assert values and all(v.startswith("skipped (") if isinstance(v, str) else np.isfinite(v)
                          for v in values)
    for name in ("config.json", "meta.json", "metrics.jsonl", "report.json"):
        assert (out / name).is_file(), name
    assert find_checkpoint(out, "best") is not None
    assert main(["evaluate", "--model", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip())
    assert evaluated["test"][metric] == pytest.approx(printed["test"][metric], rel=1e-5)


def test_text_preset_averages_three_seeds(tmp_path, capsys):
    out = tmp_path / "text"
    flags = ["--set", "model.embed_size=16", "--set", "data.max_vocab=2000"]
    assert main(["train", "--task", "text", "--out", str(out), *TINY, *flags]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert [m["seed"] for m in report["members"]] == [0, 1, 2]
    for seed in (0, 1, 2):
        assert (out / "members" / f"seed-{seed}" / "metrics.jsonl").is_file()
    assert json.loads((out / "config.json").read_text())["train"]["ensemble"] == 3
    assert main(["evaluate", "--model", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip())
    assert evaluated["test"]["accuracy"] == pytest.approx(printed["test"]["accuracy"])


@pytest.mark.parametrize("flags,message", [
    (["--set", "model.hiden_size=3"], "unknown config key 'model.hiden_size'"),
    (["--set", "train.lr=fast"], "train.lr: expected float"),
    (["--set", "model.cell=transformer"], "not one of lstm, gru, rnn"),
    (["--task", "nope"], "unknown task 'nope'"),
])
def test_bad_configuration_is_one_line_and_exit_2(flags, message, tmp_path, capsys):
    args = ["train", "--task", "digits", "--out", str(tmp_path / "run"), *TINY, *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "config.json").exists()


def test_existing_run_is_never_overwritten_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "digits", "--out", str(out), *TINY]) == 0
    before = (out / "report.json").read_bytes()
    assert main(["train", "--task", "digits", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--task", "adding", "--out", str(out), "--resume", *TINY]) == 2
    assert (out / "report.json").read_bytes() == before


def test_resume_refuses_a_changed_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "digits", "--out", str(out), *TINY]) == 0
    assert main(["train", "--task", "digits", "--out", str(out), "--resume", *TINY,
                 "--set", "train.lr=0.5"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert main(["train", "--task", "digits", "--out", str(out), "--resume", *TINY,
                 "--epochs", "2"]) == 2
    assert "train.epochs (1 -> 2); to train more epochs use --extend-epochs" in \
        capsys.readouterr().err
    # the original command (--epochs 1 included) plus --extend-epochs trains one more
    assert main(["train", "--task", "digits", "--out", str(out), "--resume", *TINY,
                 "--extend-epochs", "1"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


def test_nan_loss_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    bad = ["--set", "train.lr=1e38", "--set", "train.clip_norm=0"]
    assert main(["train", "--task", "digits", "--out", str(out), *TINY, *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mxlstm: error: step ") and "loss became" in err


def test_early_stopping_stops_when_nothing_improves(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--task", "digits", "--out", str(out), *TINY, "--epochs", "5",
            "--set", "train.lr=0", "--set", "train.early_stopping=2"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 3 and report["best_epoch"] == 1


def _run_cli(out: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mxlstm.cli", "train", "--task", "digits", "--out", str(out),
           "--set", "train.progress=false", "--set", "model.hidden_size=32", "--epochs", "6",
           "--set", "data.augment=rotate:10@0.5", "--set", "model.head_dropout=0.3", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _epochs_logged(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_killed_run_resumes_bit_identical(tmp_path):
    """kill -9 in the middle of epoch 3; --resume ends with the same parameters as an
    uninterrupted run (same seed, CPU)."""
    straight = tmp_path / "straight"
    assert _run_cli(straight, []).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    proc = _run_cli(killed, [])
    deadline = time.time() + 300
    while _epochs_logged(killed) < 2 and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert _epochs_logged(killed) < 6, "the run finished before it could be killed"
    assert _run_cli(killed, ["--resume"]).wait(timeout=300) == 0

    a = (find_checkpoint(straight, "latest") / "model.params").read_bytes()
    b = (find_checkpoint(killed, "latest") / "model.params").read_bytes()
    assert a == b
    report_a = json.loads((straight / "report.json").read_text())
    report_b = json.loads((killed / "report.json").read_text())
    assert report_a["test"] == report_b["test"]


def test_after_an_interrupt_a_half_built_array_is_collected_without_a_traceback(capsys):
    import gc

    from mxlstm.cli import _quiet_after_interrupt

    class HalfBuilt:  # as mxnet's NDArray when Ctrl-C lands before its handle is set
        def __del__(self):
            self.handle  # noqa: B018

    class Broken:
        def __del__(self):
            raise ValueError("a real bug")

    before = sys.unraisablehook
    sys.unraisablehook = _quiet_after_interrupt
    try:
        HalfBuilt()
        Broken()
        gc.collect()
    finally:
        sys.unraisablehook = before
    err = capsys.readouterr().err
    assert "handle" not in err and "ValueError: a real bug" in err  # others still shown

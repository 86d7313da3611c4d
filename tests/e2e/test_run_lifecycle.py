"""Runs you can trust: the resume rule, one writer per run directory, no lost and no
half-made runs, no code from run files, errors that keep their reason, exports without
local paths. Each case failed on mxlstm 0.1 (see docs/cli.md, "Resume and the run
directory")."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import pytest
from e2e_inputs import _drop_run_log_handlers, _reviews, snapshot, write
from test_bad_input import _clean_logging  # noqa: F401  (an autouse fixture)

from mxlstm.cli import main
from mxlstm.errors import error_reason
from mxlstm.training import checkpoint
from mxlstm.training.checkpoint import find_checkpoint
from mxlstm.training.log import MetricsLog
from mxlstm.training.summary import _seconds as summary_seconds
from mxlstm.training.summary import summary_lines
from mxlstm.training.trainer import Fitter

__all__ = ["_clean_logging"]  # the autouse fixture: no log handler outlives its test

SMALL = ["--set", "train.max_batches=2", "--set", "model.hidden_size=8",
         "--set", "train.progress=false"]


def digits(out: Path, *extra: str) -> list[str]:
    return ["train", "--task", "digits", "--out", str(out), *SMALL, *extra]


def trained(args: list[str]) -> None:
    """Run ``mxlstm train`` to success; its log handlers go (a real process would end)."""
    assert main(args) == 0
    _drop_run_log_handlers()


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("mxlstm: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def epochs_logged(out: Path) -> list[int]:
    return [record["epoch"] for record in MetricsLog.read(out / "metrics.jsonl")]


def state_of(out: Path, tag: str = "latest") -> dict:
    return json.loads((find_checkpoint(out, tag) / "state.json").read_text())


def stop_in_epoch(monkeypatch, epoch_index: int) -> None:
    """Make training fail at the start of epoch ``epoch_index`` (0-based), as a crash
    would, after the earlier epochs were checkpointed."""
    real = Fitter._train_epoch

    def failing(self, loader, epoch, state):
        if epoch == epoch_index:
            raise KeyboardInterrupt
        return real(self, loader, epoch, state)

    monkeypatch.setattr(Fitter, "_train_epoch", failing)


# ----------------------------------------------------------------------- the resume rule
def test_resume_continues_the_recorded_epochs_not_the_preset(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    stop_in_epoch(monkeypatch, 2)
    assert main(digits(out, "--epochs", "3")) == 130  # interrupted in epoch 3
    monkeypatch.undo()
    assert epochs_logged(out) == [1, 2]
    # --epochs not repeated: the run's own 3 epochs, not the preset's 60
    assert main(["train", "--task", "digits", "--out", str(out), "--resume"]) == 0
    assert epochs_logged(out) == [1, 2, 3]
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 3
    # the report's seconds are the resuming process's; train_seconds counts every epoch
    assert report["resumed"] is True
    assert report["train_seconds"] == pytest.approx(
        sum(r["seconds"] for r in MetricsLog.read(out / "metrics.jsonl")), abs=0.11)
    assert " this session (" in summary_lines(report, out)[0]
    # cosine over 3 epochs of 2 steps: the last epoch ends near 0, none runs at 0 before
    lrs = [r["lr"] for r in MetricsLog.read(out / "metrics.jsonl")]
    assert all(lr > 0 for lr in lrs[:2]), lrs


def test_finished_run_says_so_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    capsys.readouterr()
    before = snapshot(out)
    assert main(["train", "--task", "digits", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "the run is finished (1 epochs); nothing to train" in captured.err
    assert json.loads(captured.out)["best_epoch"] == 1
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "train.log"} == \
        {k: v for k, v in before.items() if k != "train.log"}


def test_extend_epochs_rebuilds_the_schedule_horizon(tmp_path, capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "2"))
    assert main(["train", "--task", "digits", "--out", str(out), "--resume",
                 "--epochs", "4"]) == 2
    assert "--extend-epochs" in one_error_line(capsys.readouterr().err)
    assert main(["train", "--task", "digits", "--out", str(out), "--resume",
                 "--extend-epochs", "2"]) == 0
    records = MetricsLog.read(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    # 0.1 kept the 2-epoch cosine horizon: epochs 3 and 4 ran at learning rate 0.0
    assert records[2]["lr"] > 1e-4 and records[3]["lr"] >= 0
    assert records[2]["lr"] > records[1]["lr"]
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 4
    assert state_of(out)["epochs_planned"] == 4


def test_extend_epochs_needs_resume(tmp_path, capsys):
    assert main(digits(tmp_path / "run", "--extend-epochs", "2")) == 2
    assert "use it with --resume" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------- never lose a run
def test_resume_with_only_invalid_checkpoints_is_refused_and_nothing_changes(tmp_path,
                                                                             capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "2"))
    for params in (out / "checkpoints").glob("*/model.params"):
        params.write_bytes(params.read_bytes()[:-8] + b"corrupt!")
    before = snapshot(out)
    assert main(digits(out, "--epochs", "2", "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no valid checkpoint to resume from" in line and "model.params" in line
    assert snapshot(out) == before


@pytest.mark.parametrize("ensemble", [1, 2])
def test_resume_on_changed_data_is_refused_naming_the_file(tmp_path, capsys, ensemble):
    data = write(tmp_path / "reviews.tsv", _reviews())
    out = tmp_path / "run"
    args = ["train", "--task", "text", "--data", str(data), "--out", str(out), *SMALL,
            "--set", "model.embed_size=8", "--set", f"train.ensemble={ensemble}"]
    trained([*args, "--epochs", "1"])
    run = out if ensemble == 1 else out / "members" / "seed-0"  # each member has its own
    assert json.loads((run / "fingerprints.json").read_text())["files"][0]["path"] == \
        str(data.resolve())
    write(data, _reviews().replace("superb", "splendid"))  # a new word: a new vocabulary
    before = snapshot(out)
    assert main([*args, "--epochs", "1", "--resume", "--extend-epochs", "1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{data.resolve()}: changed since the run" in line
    assert snapshot(out) == before


def test_extend_epochs_of_an_ensemble_extends_every_member(tmp_path, capsys):
    data = write(tmp_path / "reviews.tsv", _reviews())
    out = tmp_path / "run"
    args = ["train", "--task", "text", "--data", str(data), "--out", str(out), *SMALL,
            "--set", "model.embed_size=8", "--set", "train.ensemble=2", "--epochs", "1"]
    trained(args)
    trained([*args, "--resume", "--extend-epochs", "1"])
    for seed in (0, 1):
        member = out / "members" / f"seed-{seed}"
        epochs = [json.loads(line)["epoch"] for line in
                  (member / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2]
        assert json.loads((member / "config.json").read_text())["train"]["epochs"] == 2
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == [2, 2]

    def members_seconds() -> list[float]:
        return [sum(r["seconds"] for r in MetricsLog.read(
            out / "members" / f"seed-{seed}" / "metrics.jsonl")) for seed in (0, 1)]

    # resumed once it is finished: nothing trains, and the report still counts the
    # members' training (each epoch of both), not only this process's seconds
    trained(["train", "--task", "text", "--data", str(data), "--out", str(out), "--resume"])
    again = json.loads((out / "report.json").read_text())
    assert again["resumed"] is True and again["epochs_run"] == [2, 2]
    assert again["train_seconds"] == pytest.approx(sum(members_seconds()), abs=0.11)
    assert [m["train_seconds"] for m in again["members"]] == pytest.approx(
        members_seconds(), abs=0.051)
    assert f"this session ({summary_seconds(again['train_seconds'])} in training steps" \
        in summary_lines(again, out)[0]


def test_an_interrupted_ensemble_resumes_its_own_seeds_not_the_presets(tmp_path, monkeypatch,
                                                                         capsys):
    """The text preset trains 3 seeds from 0; a run of 2 seeds from 5, interrupted, resumes
    those 2 (its config.json is written when it stops), and refuses another count."""
    data = write(tmp_path / "reviews.tsv", _reviews())
    out = tmp_path / "run"
    base = ["train", "--task", "text", "--data", str(data), "--out", str(out), *SMALL]
    stop_in_epoch(monkeypatch, 1)
    assert main([*base, "--set", "model.embed_size=8", "--set", "train.ensemble=2",
                 "--seed", "5", "--epochs", "2"]) == 130
    monkeypatch.undo()
    _drop_run_log_handlers()
    assert json.loads((out / "config.json").read_text())["train"]["ensemble"] == 2
    assert main([*base, "--resume", "--set", "train.ensemble=3"]) == 2
    assert "train.ensemble (2 -> 3)" in one_error_line(capsys.readouterr().err)
    # killed before config.json (SIGKILL): a new run into it is refused by the member
    # and records nothing of its own configuration there
    recorded = (out / "config.json").read_text()
    (out / "config.json").unlink()
    assert main([*base, "--seed", "5", "--set", "train.ensemble=3"]) == 2
    assert "--resume" in one_error_line(capsys.readouterr().err)
    assert not (out / "config.json").exists()
    (out / "config.json").write_text(recorded)
    trained([*base, "--resume"])
    assert sorted(p.name for p in (out / "members").iterdir()) == ["seed-5", "seed-6"]
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [5, 6] and report["epochs_run"] == [2, 2]
    assert report["resumed"] is True


def test_resume_without_best_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    shutil.rmtree(out / "checkpoints" / "best")
    before = snapshot(out)
    assert main(["train", "--task", "digits", "--out", str(out), "--resume",
                 "--extend-epochs", "1"]) == 2
    assert "checkpoints/best: missing or invalid" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before


def test_a_kill_between_checkpoint_and_metrics_line_repeats_and_loses_no_epoch(
        tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_write = MetricsLog.write

    def die_on_second(self, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # the checkpoint of epoch 2 is saved, its line is not
        real_write(self, record)

    monkeypatch.setattr(MetricsLog, "write", die_on_second)
    assert main(digits(out, "--epochs", "3")) == 130
    monkeypatch.undo()
    assert epochs_logged(out) == [1] and state_of(out)["epoch"] == 2
    with open(out / "metrics.jsonl", "a") as f:  # and a line no checkpoint holds
        f.write(json.dumps({"epoch": 3, "train_loss": 0.0}) + "\n")
    assert main(digits(out, "--epochs", "3", "--resume")) == 0
    assert epochs_logged(out) == [1, 2, 3]


def test_failure_before_the_first_checkpoint_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    bad = ["--set", "train.lr=1e38", "--set", "train.clip_norm=0", "--epochs", "1"]
    assert main(digits(out, *bad)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no epoch had finished, so no checkpoint was saved" in line
    assert "last good checkpoint" not in line
    assert not out.exists()
    assert main(digits(out, "--epochs", "1")) == 0  # the same place can be used again


def test_checks_that_need_no_training_run_before_anything_is_made(tmp_path, capsys):
    out = tmp_path / "run"
    cases = [(["--set", "train.monitor=acc"], "train.monitor: the validation metrics have "
                                              "no 'acc'; they have accuracy, loss, macro_f1"),
             (["--set", "data.augment=tokendrop:0.1"],
              "data.augment='tokendrop:0.1' does not fit the samples of task digits")]
    for flags, message in cases:
        assert main(digits(out, "--epochs", "1", *flags)) == 2
        assert message in one_error_line(capsys.readouterr().err)
        assert not out.exists()


def test_killed_before_the_first_checkpoint_the_same_command_runs_again(tmp_path, caplog):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    shutil.rmtree(out / "checkpoints")  # as a kill -9 in epoch 1 leaves it
    (out / "metrics.jsonl").unlink()
    (out / "report.json").unlink()
    trained(digits(out, "--epochs", "1"))
    assert "never finished its first epoch: starting it again" in caplog.text
    assert epochs_logged(out) == [1]


# --------------------------------------------------------------------------- one writer
def test_a_second_process_into_the_same_run_directory_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mxlstm.cli", "train", "--task", "digits", "--out", str(out),
           "--epochs", "40", "--set", "model.hidden_size=8", "--set", "train.progress=false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        before = (out / "config.json").read_bytes()
        for extra in ([], ["--resume"]):
            assert main(digits(out, "--epochs", "40", *extra)) == 2
            line = one_error_line(capsys.readouterr().err)
            assert line == (f"mxlstm: error: {out} is in use by pid {proc.pid}: one process "
                            f"trains into a run directory at a time")
        assert (out / "config.json").read_bytes() == before
    finally:
        proc.kill()
        proc.wait(timeout=60)
    # the lock dies with its process: the killed run resumes
    assert main(digits(out, "--epochs", "1", "--resume")) in (0, 2)


# ------------------------------------------------------------------- no code from files
class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_a_run_directory_never_runs(tmp_path, capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    marker = tmp_path / "code-ran"
    for ckpt in (out / "checkpoints").iterdir():
        if not ckpt.is_dir():
            continue
        for name in ("optimizer.json", "optimizer.params"):
            (ckpt / name).unlink()
        (ckpt / "trainer.states").write_bytes(pickle.dumps(_Payload(str(marker))))
        manifest = json.loads((ckpt / "MANIFEST.json").read_text())
        manifest["files"] = {k: v for k, v in manifest["files"].items() if "optim" not in k}
        manifest["files"]["trainer.states"] = {
            "size": (ckpt / "trainer.states").stat().st_size,
            "sha256": checkpoint._sha256(ckpt / "trainer.states")}
        (ckpt / "MANIFEST.json").write_text(json.dumps(manifest))
    assert main(["train", "--task", "digits", "--out", str(out), "--resume",
                 "--extend-epochs", "1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "trainer.states: optimizer state saved as a pickle" in line
    assert not marker.exists()
    assert main(["evaluate", "--model", str(out)]) == 0  # its parameters still evaluate


# ---------------------------------------------------------------- errors keep the reason
def test_mxnet_errors_keep_their_cause(tmp_path, monkeypatch):
    try:
        mx.nd.load(str(write(tmp_path / "junk.params", b"not an ndarray file")))
    except mx.base.MXNetError as err:
        assert error_reason(err) == ("Check failed: header == kMXAPINDArrayListMagic: Invalid "
                                     "NDArray file format")
    try:
        mx.nd.save("/dev/full", [mx.nd.ones((256, 256))])
    except mx.base.MXNetError as err:
        assert "Traceback" not in error_reason(err)
        assert "FileStream.Write incomplete" in error_reason(err)

        class Full:
            f_bavail, f_frsize = 0, 4096

        monkeypatch.setattr(os, "statvfs", lambda path: Full())
        assert error_reason(err, tmp_path / "x") == "no space left on device"


def test_disk_full_inside_mxnet_names_the_cause(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    _drop_run_log_handlers()

    class Full:
        f_bavail, f_frsize = 0, 4096

    def full_disk(self, filename, *args, **kwargs):
        monkeypatch.setattr(os, "statvfs", lambda path: Full())
        mx.nd.save("/dev/full", [mx.nd.ones((256, 256))])

    from mxnet.gluon import Block
    monkeypatch.setattr(Block, "save_parameters", full_disk)
    before = snapshot(out / "checkpoints")
    assert main(["train", "--task", "digits", "--out", str(out), "--resume",
                 "--extend-epochs", "1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith("cannot save the checkpoint of epoch 2 (no space left on device); "
                         "the checkpoints saved before are kept")
    assert snapshot(out / "checkpoints") == before


# ----------------------------------------------------------------------------- exports
def test_exported_meta_records_no_local_path(tmp_path):
    from mxlstm.deploy import export_model

    out = tmp_path / "run"
    trained(digits(out, "--epochs", "1"))
    export_model(out, tmp_path / "export" / "digits")
    text = (tmp_path / "export" / "digits-meta.json").read_text()
    assert str(tmp_path) not in text and "/tmp" not in text
    assert json.loads(text)["source"] == {"run": "run", "tag": "best"}

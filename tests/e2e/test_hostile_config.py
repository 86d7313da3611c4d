"""Hostile configuration, tried as a careless or curious user would: typos, keys the task
ignores, a file of another task, values MXNet would crash on or silently ignore. Every
case answers with exit status 2 and one line ``mxlstm: error: <file or key>: ...`` (with a
"did you mean" for typos), no traceback, and leaves the files on disk as they were (the
``--out`` directory is not even created)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_inputs import TINY, _drop_run_log_handlers, snapshot, write
from test_bad_input import _clean_logging  # noqa: F401  (an autouse fixture)

from mxlstm.cli import main

REPO = Path(__file__).resolve().parents[2]
__all__ = ["_clean_logging"]  # the autouse fixture of test_bad_input, used here too


def train(task: str, tmp: Path, *extra: str) -> list[str]:
    return ["train", "--task", task, "--out", str(tmp / "run"), *TINY, *extra]


def with_file(task: str, tmp: Path, text: str, *extra: str) -> list[str]:
    return train(task, tmp, "--config", str(write(tmp / "run.toml", text)), *extra)


# Each case: tmp_path -> (argv, fragments the one error line must contain).
Case = Callable[[Path], tuple[list[str], list[str]]]


def _digits_file(tmp: Path) -> Path:
    """What `mxlstm config --task digits > digits.toml` writes."""
    from mxlstm.tasks import config_file_text, default_config

    return write(tmp / "digits.toml", config_file_text(default_config("digits")))


CASES: dict[str, Case] = {
    # -- typos: unknown keys with a suggestion ------------------------------------------
    "set-key-without-section": lambda t: (
        train("digits", t, "--set", "epochs=2"),
        ["command line: unknown config key 'epochs'; did you mean train.epochs?"]),
    "set-misspelt-key": lambda t: (
        train("digits", t, "--set", "model.hiden_size=3"),
        ["command line: unknown config key 'model.hiden_size'; did you mean model.hidden_size?"]),
    "set-key-in-the-wrong-section": lambda t: (
        train("digits", t, "--set", "model.lr=0.1"),
        ["command line: unknown config key 'model.lr'; did you mean train.lr?"]),
    "file-misspelt-key": lambda t: (
        with_file("digits", t, "[train]\nepoch = 3\n"),
        [f"{t / 'run.toml'}: unknown config key 'train.epoch'; did you mean train.epochs?"]),
    "file-misspelt-section": lambda t: (
        with_file("digits", t, "[modle]\nhidden_size = 16\n"),
        [f"{t / 'run.toml'}: unknown section [modle]; did you mean [model]?"]),
    "file-key-outside-any-section": lambda t: (
        with_file("digits", t, "epochs = 3\n"),
        [f"{t / 'run.toml'}: top-level key 'epochs' must be a [section] table; "
         f"did you mean train.epochs?"]),
    # -- a file of another task ---------------------------------------------------------
    "file-of-another-task": lambda t: (
        with_file("digits", t, 'task = "lm"\n[train]\nepochs = 1\n'),
        [f"{t / 'run.toml'}: the file is for task 'lm' but --task is 'digits'"]),
    "printed-digits-file-used-for-text": lambda t: (
        train("text", t, "--config", str(_digits_file(t))),
        [f"{t / 'digits.toml'}: the file is for task 'digits' but --task is 'text'"]),
    "file-task-not-a-string": lambda t: (
        with_file("digits", t, "task = 3\n"),
        [f"{t / 'run.toml'}: top-level key 'task' must be a string, got 3"]),
    # -- keys the task does not use -----------------------------------------------------
    "set-text-key-for-digits": lambda t: (
        train("digits", t, "--set", "data.text_field=review"),
        ["command line: config key data.text_field is not used by task digits"]),
    "file-path-for-a-synthetic-task": lambda t: (
        with_file("adding", t, '[data]\npath = "series.csv"\n'),
        [f"{t / 'run.toml'}: config key data.path is not used by task adding"]),
    "data-shortcut-for-copy": lambda t: (
        train("copy", t, "--data", str(t / "nothing.txt")),
        ["command line: config key data.path is not used by task copy"]),
    "lm-key-for-text": lambda t: (
        train("text", t, "--set", "data.bptt=70"),
        ["command line: config key data.bptt is not used by task text"]),
    "bidirectional-language-model": lambda t: (
        with_file("lm", t, "[model]\nbidirectional = true\n"),
        [f"{t / 'run.toml'}: config key model.bidirectional is not used by task lm"]),
    # -- values MXNet would ignore or crash on ------------------------------------------
    "kvstore-unknown": lambda t: (
        train("digits", t, "--set", "train.kvstore=bogus"),
        ["command line: config key train.kvstore: 'bogus' is not one of device, local, "
         "dist_sync"]),
    "kvstore-dist-async-in-file": lambda t: (
        with_file("digits", t, '[train]\nkvstore = "dist_async"\n'),
        [f"{t / 'run.toml'}: config key train.kvstore: 'dist_async' is not one of"]),
    "chrono-init-negative": lambda t: (
        train("digits", t, "--set", "model.chrono_init=-5"),
        ["command line: config key model.chrono_init: must be at least -1, got '-5'"]),
    "chrono-init-too-short": lambda t: (
        train("digits", t, "--set", "model.chrono_init=2"),
        ["command line: config key model.chrono_init: must be 0 (off), -1 (the longest "
         "training series) or at least 3"]),
    "hidden-size-beyond-the-cap": lambda t: (
        train("digits", t, "--set", "model.hidden_size=200000"),
        ["command line: config key model.hidden_size: must be at most 65536, got '200000'"]),
    "hidden-size-beyond-mxnet-tensor-limit": lambda t: (
        train("digits", t, "--set", "model.hidden_size=30000"),
        ["config key model.hidden_size: model.hidden_size=30000 needs a weight matrix of "
         "3,600,000,000 elements; MXNet allows at most 2^31 - 1 per tensor"]),
    "too-many-layers": lambda t: (
        train("lm", t, "--set", "model.num_layers=1000"),
        ["command line: config key model.num_layers: must be at most 64, got '1000'"]),
    "batch-size-absurd": lambda t: (
        train("digits", t, "--set", "train.batch_size=1000000000"),
        ["command line: config key train.batch_size: must be at most 1048576"]),
    "learning-rate-infinite": lambda t: (
        train("digits", t, "--set", "train.lr=inf"),
        ["command line: config key train.lr: must be a finite number, got 'inf'"]),
    "learning-rate-nan": lambda t: (
        train("digits", t, "--set", "train.lr=nan"),
        ["command line: config key train.lr: must be a finite number, got 'nan'"]),
    "toml-inf-literal": lambda t: (
        with_file("digits", t, "[train]\nclip_norm = inf\n"),
        [f"{t / 'run.toml'}: config key train.clip_norm: must be a finite number, got inf"]),
    "toml-nan-dropout": lambda t: (
        with_file("text", t, "[model]\ndropout = nan\n"),
        [f"{t / 'run.toml'}: config key model.dropout: must be a finite number, got nan"]),
    "toml-list-for-a-string": lambda t: (
        with_file("digits", t, '[data]\naugment = ["jitter:0.1"]\n'),
        [f"{t / 'run.toml'}: config key data.augment: expected str, got ['jitter:0.1']"]),
    "config-command-too": lambda t: (
        ["config", "--task", "digits", "--set", "train.epoch=3"],
        ["command line: unknown config key 'train.epoch'; did you mean train.epochs?"]),
}


def test_there_are_at_least_12_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_config_gives_one_line_exit_2_and_changes_nothing(name, tmp_path, capsys):
    argv, fragments = CASES[name](tmp_path)
    _drop_run_log_handlers()
    capsys.readouterr()
    before = snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("mxlstm: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert out == ""
    assert snapshot(tmp_path) == before  # the config file untouched; no --out created
    assert not (tmp_path / "run").exists()


def test_real_process_typo_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MXNET_ENGINE_TYPE", None)
    config = write(tmp_path / "run.toml", "[train]\nepochs = 1\n")
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mxlstm.cli", "train", "--task", "digits", "--config",
         str(config), "--out", str(tmp_path / "run"), "--set", "epochs=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "mxlstm: error: command line: unknown config key 'epochs'; did you mean train.epochs?"]
    assert proc.stdout == ""
    assert snapshot(tmp_path) == before

"""``train.min_steps``: a small training split still gets enough optimizer steps."""

from __future__ import annotations

import json

from mxlstm import runs
from mxlstm.tasks import user_config

TINY = {"data.num_train": 64, "data.num_eval": 32, "data.seq_length": 8,
        "train.batch_size": 32, "model.hidden_size": 8, "train.epochs": 1,
        "train.progress": False}


def test_epochs_are_raised_to_reach_min_steps_and_recorded(tmp_path):
    cfg = user_config("adding", flags={**TINY, "train.min_steps": 5})
    report = runs.train(cfg, tmp_path / "run", progress="off", quiet=True)
    assert report["epochs_planned"] == 3 and report["epochs_run"] == 3  # 2 steps an epoch
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["train"]["epochs"] == 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 6
    again = runs.train(cfg, tmp_path / "run", resume=True, progress="off", quiet=True)
    assert again["already_finished"]  # the resume continues to the recorded total


def test_min_steps_below_the_epochs_changes_nothing(tmp_path):
    cfg = user_config("adding", flags={**TINY, "train.epochs": 2, "train.min_steps": 3})
    assert runs.train(cfg, tmp_path / "run", progress="off", quiet=True)["epochs_run"] == 2

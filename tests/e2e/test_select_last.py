"""``train.select=last`` with ``data.valid_fraction=0``: every training series trains, the
final epoch's weights are the model that is reported, exported and resumed, and the
combinations that need a validation metric are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from e2e_inputs import _drop_run_log_handlers
from test_bad_input import _clean_logging  # noqa: F401  (an autouse fixture)
from test_run_lifecycle import one_error_line, stop_in_epoch

from mxlstm.cli import main
from mxlstm.deploy.export import export_model
from mxlstm.deploy.predictor import Predictor
from mxlstm.runs import load_model
from mxlstm.training.checkpoint import find_checkpoint
from mxlstm.training.log import MetricsLog
from mxlstm.training.summary import summary_lines

__all__ = ["_clean_logging"]

LAST = ["--set", "train.select=last", "--set", "data.valid_fraction=0"]
TINY = ["--set", "train.progress=false", "--set", "model.hidden_size=8",
        "--set", "model.conv_filters=8,8,8", "--set", "train.max_batches=2"]


def gunpoint(out: Path, *extra: str) -> list[str]:
    """GunPoint with the series preset (LSTM-FCN), tiny: 2 batches an epoch."""
    return ["train", "--task", "uea", "--set", "data.name=GunPoint", "--out", str(out),
            *TINY, *extra]


def trained(args: list[str]) -> dict:
    assert main(args) == 0
    _drop_run_log_handlers()
    return json.loads((Path(args[args.index("--out") + 1]) / "report.json").read_text())


def params(out: Path, tag: str) -> bytes:
    return (find_checkpoint(out, tag) / "model.params").read_bytes()


def test_no_validation_trains_on_all_and_keeps_the_final_weights(tmp_path):
    out = tmp_path / "run"
    report = trained(gunpoint(out, "--epochs", "3", *LAST))
    # all 50 training series train; nothing is held out
    assert report["counts"] == {"train": 50, "valid": 0, "test": 150}
    assert report["selection"] == {"select": "last", "validation": False,
                                   "model": "the final epoch (no validation split)"}
    assert report["best_epoch"] == 3 and report["monitor"] is None
    assert report["best_valid"] is None
    records = MetricsLog.read(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert not any(k.startswith("valid_") or k == "main_metric" for r in records for k in r)
    assert params(out, "best") == params(out, "latest")  # the final epoch, saved once
    assert find_checkpoint(out, "latest").name == "epoch-0003"
    assert ", the final epoch 3 kept, " in summary_lines(report, out)[0]
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "model kept" in page and "the final epoch (no validation split)" in page
    # the export is of the final weights: its graph answers as the latest checkpoint does
    prefix = tmp_path / "export" / "gp"
    export_model(out, prefix)
    prepared, _, _ = load_model(out, tag="latest")
    x, _, lengths = next(iter(prepared.test_loader))
    live = prepared.model(x, lengths).asnumpy()
    graph = Predictor(prefix).forward(x.asnumpy(), lengths.asnumpy())[0]
    np.testing.assert_allclose(graph, live, rtol=1e-5, atol=1e-5)


def test_with_validation_select_last_still_logs_validation_and_keeps_the_final_epoch(
        tmp_path):
    out = tmp_path / "run"
    report = trained(gunpoint(out, "--epochs", "2", "--set", "train.select=last",
                              "--set", "data.valid_fraction=0.2"))
    assert report["counts"]["valid"] == 10 and report["selection"]["validation"] is True
    records = MetricsLog.read(out / "metrics.jsonl")
    assert report["best_valid"] == records[-1]["valid_accuracy"]
    assert report["best_epoch"] == 2 and params(out, "best") == params(out, "latest")


def test_resume_with_select_last_is_bit_identical(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    want = trained(gunpoint(straight, "--epochs", "3", *LAST))
    out = tmp_path / "run"
    stop_in_epoch(monkeypatch, 2)
    assert main(gunpoint(out, "--epochs", "3", *LAST)) == 130  # a crash in epoch 3
    monkeypatch.undo()
    _drop_run_log_handlers()
    assert find_checkpoint(out, "best") is None  # no final epoch yet, so nothing kept
    got = trained(["train", "--task", "uea", "--out", str(out), "--resume", *TINY[:2]])
    assert params(out, "latest") == params(straight, "latest")
    assert params(out, "best") == params(out, "latest")
    assert got["test"] == want["test"] and got["best_epoch"] == 3
    # more epochs: the new final epoch replaces the kept model
    more = trained(["train", "--task", "uea", "--out", str(out), "--resume",
                    "--extend-epochs", "1", *TINY[:2]])
    assert more["best_epoch"] == 4 and params(out, "best") == params(out, "latest")
    assert params(out, "best") != params(straight, "best")


@pytest.mark.parametrize("extra, words", [
    ([], "data.valid_fraction=0 holds out no validation split, so there is no best epoch"),
    ([*LAST, "--set", "train.early_stopping=3"],
     "train.early_stopping=3 needs a validation metric but data.valid_fraction=0"),
    ([*LAST, "--set", "train.schedule=plateau"], "train.schedule=plateau needs a validation"),
    ([*LAST, "--set", "train.monitor=accuracy"], "train.monitor=accuracy needs a validation"),
    (["--set", "train.select=last", "--set", "data.valid_fraction=0.2",
      "--set", "train.early_stopping=3"],
     "train.early_stopping=3 acts on the best validation epoch, which train.select=last"),
])
def test_combinations_without_a_validation_metric_are_one_error_line(tmp_path, capsys,
                                                                     extra, words):
    out = tmp_path / "run"
    args = gunpoint(out, "--epochs", "1", *extra)
    if not extra:
        args += ["--set", "data.valid_fraction=0", "--set", "train.select=best"]
    assert main(args) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not out.exists()  # refused before anything was made


def test_ensemble_members_keep_their_final_epochs(tmp_path):
    out = tmp_path / "ens"
    report = trained(gunpoint(out, "--epochs", "2", *LAST, "--set", "train.ensemble=2"))
    assert report["selection"]["select"] == "last" and report["best_epoch"] == [2, 2]
    for seed in (0, 1):
        member = out / "members" / f"seed-{seed}"
        assert params(member, "best") == params(member, "latest")
    prepared, _, _ = load_model(out)  # the members' kept (final) checkpoints, averaged
    x, _, lengths = next(iter(prepared.test_loader))
    assert prepared.model(x, lengths).shape == (x.shape[0], 2)

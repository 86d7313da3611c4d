"""Run logs: JSON lines, reports, plots (with and without matplotlib), logging setup."""

from __future__ import annotations

import builtins
import importlib.util
import json
import logging

import numpy as np
import pytest

from mxlstm.errors import DataError
from mxlstm.training.log import (
    MetricsLog,
    plot_confusion,
    plot_curves,
    setup_logging,
    write_report,
)

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def write_epochs(path, n=4):
    log = MetricsLog(path)
    for epoch in range(1, n + 1):
        log.write({"epoch": epoch, "train_loss": np.float32(1.0 / epoch),
                   "valid": {"loss": 1.2 / epoch, "accuracy": np.float64(0.5 + epoch / 20)},
                   "lr": 0.01, "confusion": np.eye(2, dtype=np.int64)})
        log.write({"epoch": epoch, "batch": 3, "loss": 9.0})  # per-batch: not plotted
    return log


def test_json_lines_round_trip(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    log = MetricsLog(path)
    log.write({"epoch": 1, "loss": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    log.write({"epoch": 2, "loss": float("nan"), "name": "é"})
    records = MetricsLog.read(path)
    assert records[0] == {"epoch": 1, "loss": 0.5, "n": 3, "v": [0, 1]}
    assert records[1]["name"] == "é" and np.isnan(records[1]["loss"])
    assert path.read_text("utf-8").count("\n") == 2
    with pytest.raises(DataError, match="missing.jsonl"):
        MetricsLog.read(tmp_path / "missing.jsonl")


def test_truncated_last_line_skipped_and_append_after_it(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    MetricsLog(path).write({"epoch": 1})
    with open(path, "ab") as f:
        f.write(b'{"epoch": 2, "lo')  # crash mid-write
    assert MetricsLog.read(path) == [{"epoch": 1}]
    assert "malformed" not in caplog.text
    MetricsLog(path).write({"epoch": 2})  # resumed run appends on a fresh line
    assert MetricsLog.read(path) == [{"epoch": 1}, {"epoch": 2}]
    assert "metrics.jsonl:2: skipping malformed line" in caplog.text


def test_write_report(tmp_path):
    path = tmp_path / "out" / "report.json"
    write_report(path, {"accuracy": np.float32(0.75), "confusion": np.eye(2, dtype=int)})
    assert json.loads(path.read_text()) == {"accuracy": 0.75, "confusion": [[1, 0], [0, 1]]}
    assert path.read_text().startswith("{\n  ")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_plots_return_false_without_matplotlib(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    write_epochs(tmp_path / "m.jsonl")
    assert plot_curves(tmp_path / "m.jsonl", tmp_path / "curves.png") is False
    assert plot_confusion([[3, 1], [0, 2]], ["a", "b"], tmp_path / "conf.png") is False
    assert not (tmp_path / "curves.png").exists() and not (tmp_path / "conf.png").exists()
    with pytest.raises(ValueError):
        plot_confusion([[1, 2, 3]], None, tmp_path / "bad.png")


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib not installed")
def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib.pyplot")
    write_epochs(tmp_path / "m.jsonl")
    png = tmp_path / "plots" / "curves.png"
    assert plot_curves(tmp_path / "m.jsonl", png) is True
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    conf = tmp_path / "conf.png"
    assert plot_confusion(np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]]), ["x", "y", "z"], conf)
    assert conf.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    MetricsLog(tmp_path / "empty.jsonl").write({"note": "no epochs"})
    assert plot_curves(tmp_path / "empty.jsonl", tmp_path / "e.png") is False


def test_setup_logging_writes_train_log(tmp_path, capfd):
    root = logging.getLogger()
    try:
        setup_logging(tmp_path / "run")
        log_file = setup_logging(tmp_path / "run", debug=True)  # replaces, no duplicates
        logging.getLogger("mxlstm.test").info("epoch 1 done")
        logging.getLogger("mxlstm.test").debug("details")
        for handler in root.handlers:
            handler.flush()
        text = log_file.read_text("utf-8")
        assert log_file == tmp_path / "run" / "train.log"
        assert text.count("epoch 1 done") == 1 and "details" in text
        assert "mxlstm.test" in text
        assert capfd.readouterr().err.count("I epoch 1 done") == 1
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_mxlstm", False):
                root.removeHandler(handler)
                handler.close()
        logging.getLogger("mxlstm").setLevel(logging.NOTSET)

"""End to end: series regression on the user's own data, a seed ensemble, export, predict."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

from mxlstm import runs
from mxlstm.deploy.export import export_model
from mxlstm.deploy.predictor import Predictor
from mxlstm.errors import DataError
from mxlstm.tasks import user_config
from mxlstm.tasks.regression import read_regression_file


def _data(path, n=100, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 12, 1)).astype(np.float32) + 5.0
    y = 10.0 * x[:, :6, 0].mean(axis=1) + 3.0  # the level of the first half
    np.savez(path, x=x, y=y.astype(np.float64))
    return x, y


def test_regression_ensemble_learns_exports_and_predicts(tmp_path):
    x, y = _data(tmp_path / "train.npz")
    cfg = user_config("series-regression", flags={
        "data.path": str(tmp_path / "train.npz"), "model.hidden_size": 8,
        "model.family": "lstm_fcn", "model.conv_filters": "8", "data.augment": "",
        "train.epochs": 25, "train.ensemble": 2, "train.progress": False,
        "train.lr": 0.01})
    report = runs.train(cfg, tmp_path / "run")
    test = report["test"]
    assert {"mse", "rmse", "mae", "r2"} <= set(test)
    mean_rmse = report["baseline"]["mean_predictor"]["rmse"]
    assert test["rmse"] < 0.7 * mean_rmse  # it learns: well below the training mean
    assert "ridge" in report["baseline"] and len(report["members"]) == 2
    assert (tmp_path / "run" / "members" / "seed-1" / "report.json").exists()

    sidecar = export_model(tmp_path / "run", tmp_path / "x" / "model")
    assert sidecar["kind"] == "regression" and sidecar["verification"]["max_abs_diff"] < 1e-5
    predictor = Predictor(str(tmp_path / "x" / "model"))
    rows = [x[k] for k in range(5)]
    values = [a["value"] for a in predictor.predict(rows)]
    prepared, _, meta = runs.load_model(tmp_path / "run")
    norm = meta["normalization"]
    z = (np.stack(rows) - np.array(norm["mean"])) / np.array(norm["std"])
    direct = prepared.model(mx.nd.array(z), mx.nd.full((5,), 12)).asnumpy()[:, 0]
    np.testing.assert_allclose(values, direct, rtol=1e-4, atol=1e-4)
    again = runs.evaluate(tmp_path / "run")["test"]
    assert again["rmse"] == pytest.approx(test["rmse"], rel=1e-5)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["ensemble"] == 2


def test_regression_readers(tmp_path):
    ts = tmp_path / "r.ts"
    ts.write_text("@problemName r\n@timeStamps false\n@missing false\n@univariate true\n"
                  "@equalLength true\n@seriesLength 3\n@targetLabel true\n@data\n"
                  "1,2,3:0.5\n4,5,6:-1.25\n")
    data = read_regression_file(str(ts))
    assert data.labels.tolist() == [0.5, -1.25] and data.sequences[1][:, 0].tolist() == [4, 5, 6]
    csv = tmp_path / "r.csv"
    csv.write_text("1,2,3,2.5\n4,5,6,10\n")
    assert read_regression_file(str(csv)).labels.tolist() == [2.5, 10.0]
    classes = tmp_path / "c.ts"
    classes.write_text(ts.read_text().replace("@targetLabel true", "@classLabel true a b")
                       .replace(":0.5", ":a").replace(":-1.25", ":b"))
    with pytest.raises(DataError, match="class labels, not real-valued targets"):
        read_regression_file(str(classes))

"""``data.valid_path`` (``--valid-data``): a user's own validation file, for every task
that reads files; the training split then trains in full."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mxlstm import tasks
from mxlstm.api.datafiles import write_series
from mxlstm.errors import ConfigError, DataError
from mxlstm.tasks import user_config


def _series(tmp_path, name, n, channels=1, labels=None, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n) if labels is None else labels
    return str(write_series(tmp_path / name, rng.randn(n, 10, channels), y))


def test_series_classification_validates_on_the_own_file(tmp_path):
    train = _series(tmp_path, "train.npz", 50)
    valid = _series(tmp_path, "valid.npz", 7, seed=1)
    cfg = user_config("uea", flags={"data.path": train, "data.valid_path": valid})
    prepared = tasks.prepare(cfg)
    # the default 80/20 test split of the 50, then all of the remaining 40 train
    assert prepared.meta["counts"] == {"train": 40, "valid": 7, "test": 10}
    without = tasks.prepare(user_config("uea", flags={"data.path": train}))
    assert without.meta["counts"]["train"] + without.meta["counts"]["valid"] == 40


def test_series_validation_file_of_another_shape_is_refused(tmp_path):
    train = _series(tmp_path, "train.npz", 50)
    wide = _series(tmp_path, "valid.npz", 7, channels=3)
    unknown = str(write_series(tmp_path / "odd.npz", np.zeros((3, 10, 1)), [0, 1, 7]))
    with pytest.raises(DataError, match="validation data has 3 channels"):
        tasks.prepare(user_config("uea", flags={"data.path": train, "data.valid_path": wide}))
    with pytest.raises(DataError, match="label '7' does not occur in training"):
        tasks.prepare(user_config("uea", flags={"data.path": train,
                                                "data.valid_path": unknown}))


def test_series_regression_validates_on_the_own_file(tmp_path):
    rng = np.random.RandomState(0)
    train = str(write_series(tmp_path / "t.npz", rng.randn(30, 8, 1), rng.randn(30)))
    valid = str(write_series(tmp_path / "v.npz", rng.randn(5, 8, 1), rng.randn(5)))
    cfg = user_config("series-regression", flags={"data.path": train,
                                                  "data.valid_path": valid})
    assert tasks.prepare(cfg).meta["counts"] == {"train": 24, "valid": 5, "test": 6}


def test_text_validates_on_the_own_file(tmp_path):
    rows = [{"text": f"good film number {i}" if i % 2 else f"bad film {i}",
             "label": i % 2} for i in range(60)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "valid.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:9]))
    cfg = user_config("text", flags={"data.path": str(tmp_path / "train.jsonl"),
                                     "data.valid_path": str(tmp_path / "valid.jsonl")})
    # the standard 80/10/10 split: its 10 % validation part trains too
    assert tasks.prepare(cfg).meta["counts"] == {"train": 54, "valid": 9, "test": 6}


def test_valid_fraction_zero_holds_out_nothing_for_every_task_that_reads_it(tmp_path):
    """``data.valid_fraction=0`` (with ``train.select=last``): the whole training split
    trains, no validation loader; the split of the test part is unchanged."""
    train = _series(tmp_path, "train.npz", 50)
    rng = np.random.RandomState(0)
    reg = str(write_series(tmp_path / "t.npz", rng.randn(30, 8, 1), rng.randn(30)))
    rows = [{"text": f"good film number {i}" if i % 2 else f"bad film {i}",
             "label": i % 2} for i in range(60)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    none = {"data.valid_fraction": 0, "train.select": "last"}
    for task, path, counts in (("uea", train, {"train": 40, "valid": 0, "test": 10}),
                               ("series-regression", reg, {"train": 24, "valid": 0,
                                                           "test": 6}),
                               ("text", str(tmp_path / "train.jsonl"),
                                {"train": 54, "valid": 0, "test": 6})):
        prepared = tasks.prepare(user_config(task, flags={"data.path": path, **none}))
        assert prepared.meta["counts"] == counts, task
        assert prepared.valid_loader is None
        held = tasks.prepare(user_config(task, flags={"data.path": path,
                                                      "data.valid_fraction": 0.2,
                                                      "train.select": "best"}))
        assert held.meta["counts"]["test"] == counts["test"] and held.meta["counts"]["valid"]
        assert held.meta["counts"]["train"] + held.meta["counts"]["valid"] == \
            counts["train"]


def test_language_model_validates_on_the_own_file(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat on the mat . " * 400)
    (tmp_path / "valid.txt").write_text("the dog sat on the log . " * 100)
    cfg = user_config("lm", flags={"data.path": str(tmp_path / "train.txt"),
                                   "data.valid_path": str(tmp_path / "valid.txt"),
                                   "train.batch_size": 4, "train.eval_batch_size": 4})
    from mxlstm.data.text import load_corpus

    counts = tasks.prepare(cfg).meta["counts"]
    assert counts["valid"] == len(load_corpus([str(tmp_path / "valid.txt")], "word"))
    whole = len(load_corpus([str(tmp_path / "train.txt")], "word"))
    assert counts["train"] + counts["test"] == whole  # the whole training file


def test_synthetic_tasks_refuse_a_validation_file():
    with pytest.raises(ConfigError, match="data.valid_path is not used by task adding"):
        user_config("adding", flags={"data.valid_path": "x.npz"})


def test_npz_lengths_array_keeps_each_series_length(tmp_path):
    from mxlstm.data.sources import load_npz

    x = np.full((3, 6, 2), 9.0)
    path = str(write_series(tmp_path / "l.npz", x, [0, 1, 0], lengths=np.array([6, 2, 4])))
    data = load_npz(path)
    assert [len(s) for s in data.sequences] == [6, 2, 4]

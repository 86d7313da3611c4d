"""Series regression: one real-valued target per series (``--task series-regression``).

Data: ``data.path`` (+ ``data.test_path``) as ``.ts`` with ``@targetLabel true``, ``.npz``
with a float ``y`` (``(N,)``), or CSV rows of values then the target; without a test file
a seeded 80/20 split (``RandomState(0)``) is the test split. Without ``data.path`` the
embedded archive set ``data.name`` (``Tecator``) with its own TRAIN/TEST files. The
validation part is a ``data.valid_fraction`` of the training split (seeded by
``train.seed``). Inputs are normalised with training-split statistics; targets are
standardised inside the model (its last layer maps back to the data's units), so the
exported graph predicts in the units of the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mxlstm.config import RunConfig
from mxlstm.data.batchify import pad_batchify
from mxlstm.data.fileio import require_file
from mxlstm.data.sources import (
    UEA_REGRESSION,
    SequenceDataset,
    load_csv_series,
    load_npz,
    load_ts,
    uea_path,
)
from mxlstm.errors import ConfigError, DataError
from mxlstm.tasks import split_handoff
from mxlstm.tasks.base import Prepared, loaders, sequence_model
from mxlstm.tasks.sequences import IGNORED as SERIES_IGNORED
from mxlstm.tasks.sequences import PRESETS as SERIES_PRESETS
from mxlstm.tasks.sequences import normalize_splits
from mxlstm.training.metrics import RegressionMetrics
from mxlstm.training.objectives import Regression
from mxlstm.training.selection import has_validation

TASK = "series-regression"
# The series preset without augmentation: a spectrum's target (Tecator's fat content) lies
# in shape differences far smaller than the classification preset's jitter of 0.05 per step
# (z-normalised): RMSE 1.09 without it, 2.14 with it (docs/results.md).
PRESETS = {TASK: {**SERIES_PRESETS["uea"], "data.name": "Tecator", "data.augment": ""}}
IGNORED = {TASK: SERIES_IGNORED["uea"]}


def _targets(data: SequenceDataset) -> SequenceDataset:
    """``data`` with float targets; class labels and unlabelled series are errors."""
    labels = data.labels
    if data.label_names and data.path and str(data.path).lower().endswith((".csv", ".gz")):
        try:  # CSV labels are read as class names: the names are the canonical numbers
            labels = np.array([float(data.label_names[k]) for k in labels], np.float32)
        except ValueError:
            raise DataError("targets must be numbers (task series-regression)",
                            path=data.path, field="label") from None
    elif data.label_names or labels.dtype.kind != "f":
        raise DataError("class labels, not real-valued targets: use task uea for "
                        "classification (a .ts file needs '@targetLabel true', an .npz a "
                        "float 'y')", path=data.path, field="label")
    if not np.isfinite(labels).all():
        raise DataError("series without a finite target", path=data.path, field="label")
    return SequenceDataset(data.sequences, labels, [], data.path)


def read_regression_file(path: str) -> SequenceDataset:
    """A user's series-regression file by extension (``.ts``, ``.npz``, ``.csv``)."""
    require_file(path)
    name = Path(path).name.lower()
    if name.endswith((".ts", ".ts.gz")):
        return _targets(load_ts(path))
    if name.endswith(".npz"):
        return _targets(load_npz(path, allow_pickle=False))
    if name.endswith((".csv", ".csv.gz")):
        return _targets(load_csv_series(path))
    raise DataError("unknown series format (expected .ts, .npz or .csv)", path=path)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n)
    cut = n - max(1, int(round(fraction * n)))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def _splits(cfg: RunConfig) -> tuple[SequenceDataset, SequenceDataset]:
    d = cfg.data
    if d.path:
        full = read_regression_file(d.path)
        if d.test_path:
            return full, read_regression_file(d.test_path)
        train_idx, test_idx = _split(len(full), 0.2, 0)
        return full.subset(train_idx), full.subset(test_idx)
    try:
        return (_targets(load_ts(uea_path(d.name, "train", UEA_REGRESSION))),
                _targets(load_ts(uea_path(d.name, "test", UEA_REGRESSION))))
    except DataError as err:
        raise ConfigError(f"data.name: {err}") from None


def training_size(cfg: RunConfig) -> int:
    """Series in the training split (validation included), for ``train.small_data``."""
    return split_handoff.count_training(cfg, _splits)  # kept for prepare: read once


class RegressionScores(RegressionMetrics):
    """MSE / MAE / RMSE plus ``r2`` = 1 - SSE / SST (SST around the targets' own mean)."""

    def reset(self) -> None:
        super().reset()
        self._t = self._tt = 0.0

    def update(self, targets, predictions, mask=None) -> None:
        super().update(targets, predictions, mask)
        t = np.asarray(targets, np.float64).reshape(-1)
        self._t += float(t.sum())
        self._tt += float(np.dot(t, t))

    def result(self) -> dict:
        out = super().result()
        sst = self._tt - self._t * self._t / self._n if self._n else 0.0
        out["r2"] = 1.0 - self._sse / sst if sst > 0 else float("nan")
        return out


class ScaledRegression(Regression):
    """Mean squared error divided by the training targets' variance (the loss of
    standardised targets, so gradient clipping and learning rates behave as for unit
    targets); metrics in the data's units."""

    monitor = "rmse"

    def __init__(self, variance: float) -> None:
        self.scale = 1.0 / max(float(variance), 1e-12)

    def new_metrics(self) -> RegressionScores:
        return RegressionScores()

    def forward(self, model, shard, index):
        loss, pred = super().forward(model, shard, index)
        return loss * self.scale, pred


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    train_all, test = split_handoff.read_splits(cfg, _splits)
    if len(test) == 0 or len(train_all) < 2:
        raise DataError(f"too few series ({len(train_all)}) for a training and a test "
                        f"split", path=cfg.data.path or None)
    if test.num_channels != train_all.num_channels:
        raise DataError(f"test data has {test.num_channels} channels, training data "
                        f"{train_all.num_channels}", path=test.path)
    if artefacts:
        train, valid = train_all, train_all
        target = artefacts["target"]
    else:
        if cfg.data.valid_path:  # the user's own validation file: all of train_all trains
            train, valid = train_all, read_regression_file(cfg.data.valid_path)
            if valid.num_channels != train.num_channels:
                raise DataError(f"validation data has {valid.num_channels} channels, "
                                f"training data {train.num_channels}", path=valid.path)
        elif not has_validation(cfg):  # no validation split (train.select=last)
            train, valid = train_all, None
        else:
            train_idx, valid_idx = _split(len(train_all), cfg.data.valid_fraction,
                                          cfg.train.seed)
            train, valid = train_all.subset(train_idx), train_all.subset(valid_idx)
        y = train.labels.astype(np.float64)
        target = {"mean": float(y.mean()), "std": float(max(y.std(), 1e-6))}
    test_raw = test
    stats, (train, valid, test) = normalize_splits(cfg, artefacts, train, valid, test)
    train_loader, valid_loader, test_loader, steps = loaders(
        cfg, train, valid, test, pad_batchify_fn=pad_batchify(label_dtype="float32"),
        shard=shard)
    max_length = int((artefacts or {}).get("input", {}).get("max_length") or train.max_length)
    meta = {
        "task": cfg.task, "kind": "regression", "label_names": ["target"],
        "input": {"type": "float", "layout": "NTC", "channels": train.num_channels,
                  "dtype": "float32", "lengths": True, "max_length": max_length},
        "normalization": stats.to_dict() if stats is not None else None,
        "target": target,
        "counts": {"train": len(train), "valid": len(valid or ()), "test": len(test)},
    }
    model = sequence_model(cfg, 1, input_size=train.num_channels, max_length=max_length,
                           target=(target["mean"], target["std"]))
    # the baselines fit the whole training split (train + valid)
    baseline = {"kind": "regression", "train_x": train_all.sequences,
                "train_y": train_all.labels, "test_x": test_raw.sequences,
                "test_y": test_raw.labels}
    return Prepared(model, ScaledRegression(target["std"] ** 2), train_loader, valid_loader,
                    test_loader, steps, meta, baseline_data=baseline)

"""Sequence classification on numeric series: digits (image rows), UEA/UCR sets, user files.

Splits: digits — stratified 80/20 from ``RandomState(0)`` (test), then a stratified
``data.valid_fraction`` of the rest (validation, seeded by ``train.seed``); UEA — the
archive's own TRAIN/TEST files, validation carved from TRAIN the same way.
Normalisation statistics are computed on the training part only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mxlstm.config import RunConfig
from mxlstm.data.fileio import require_file
from mxlstm.data.sources import (
    NormalizationStats,
    SequenceDataset,
    load_csv_series,
    load_digits,
    load_idx,
    load_npz,
    load_ts,
    load_uea,
    stratified_split,
)
from mxlstm.data.validate import check_classes, index_labels
from mxlstm.errors import ConfigError, DataError
from mxlstm.tasks import split_handoff
from mxlstm.tasks.base import (
    COPY_KEYS,
    EMBEDDING_KEYS,
    LM_KEYS,
    SYNTHETIC_KEYS,
    TEXT_FILE_KEYS,
    TOKEN_KEYS,
    Prepared,
    loaders,
    sequence_model,
)
from mxlstm.training.objectives import Classification
from mxlstm.training.selection import has_validation

# The series preset (tasks uea and vowels), chosen on GunPoint, ItalyPowerDemand, OSULeaf,
# ACSF1 and JapaneseVowels at once (docs/results.md): a bidirectional LSTM beside an
# LSTM-FCN convolutional branch; univariate series z-normalised per series; long series
# averaged to <= 128 steps, with a second convolutional branch on the same series at
# <= 512 steps where that is finer (short spikes of ACSF1); batches of 16, and at least
# 1000 optimizer steps (more epochs on small training sets: GunPoint's 40 training series
# make 3 steps an epoch). Training splits of fewer than 300 series (every archive set here)
# train on every series, keep the final epoch and average 3 seeds (train.small_data).
_SERIES = {"model.family": "lstm_fcn", "model.conv_filters": "64,128,64",
           "model.series_norm": "auto", "model.max_steps": 128, "model.conv_fine_steps": 512,
           "model.hidden_size": 64,
           "model.bidirectional": True, "model.pooling": "last", "model.input_dropout": 0.2,
           "train.epochs": 80, "train.lr": 3e-3, "train.batch_size": 16,
           "train.schedule": "cosine", "train.min_steps": 1000, "data.valid_fraction": 0.2,
           "train.small_data": 300,
           "data.augment": "jitter:0.05@0.5,scale:0.1@0.5"}
PRESETS = {
    "digits": {"model.hidden_size": 128, "model.bidirectional": True, "model.head_units": "256",
               "model.input_dropout": 0.1, "model.head_dropout": 0.3, "train.epochs": 60,
               "train.lr": 3e-3,
               "train.batch_size": 64, "train.schedule": "cosine",
               "data.augment": "pixelshift:1@0.5,rotate:10@0.5"},
    "vowels": {"data.name": "JapaneseVowels", **_SERIES},
    "uea": dict(_SERIES),
}
# Keys these tasks do not read (numeric series: no tokens, no truncation; digits has no
# data.name, its one embedded set).
_NOT_SERIES = (SYNTHETIC_KEYS | COPY_KEYS | TEXT_FILE_KEYS | TOKEN_KEYS | EMBEDDING_KEYS
               | LM_KEYS | {"data.max_length"})
IGNORED = {"digits": _NOT_SERIES | {"data.name"}, "vowels": _NOT_SERIES, "uea": _NOT_SERIES}


def normalize_splits(cfg: RunConfig, artefacts: dict | None, train, valid, test):
    """Per-channel normalisation of the three splits: statistics fitted on ``train``
    (``data.normalize``), or those of a trained model's ``artefacts``; returns
    ``(stats or None, (train, valid, test))`` (``valid`` None: no validation split)."""
    stats = None
    if artefacts and artefacts.get("normalization"):
        stats = NormalizationStats.from_dict(artefacts["normalization"])
    elif cfg.data.normalize and not artefacts:
        stats = NormalizationStats.fit(train)
    if stats is not None:
        train, valid, test = (None if s is None else stats.transform(s)
                              for s in (train, valid, test))
    return stats, (train, valid, test)


def read_series_file(path: str) -> SequenceDataset:
    """A user's series file by extension: ``.ts``, ``.npz``, ``.csv``, or an IDX pair
    ``images-idx3-ubyte[.gz]`` (labels found by replacing ``images-idx3`` with ``labels-idx1``)."""
    require_file(path)
    name = Path(path).name.lower()
    if name.endswith(".ts"):
        return _class_labels(load_ts(path))
    if name.endswith(".npz"):
        return _class_labels(load_npz(path, allow_pickle=False))
    if name.endswith((".csv", ".csv.gz")):
        return load_csv_series(path)
    if "idx3-ubyte" in name:
        labels = str(path).replace("images-idx3", "labels-idx1").replace("images.idx3",
                                                                          "labels.idx1")
        if labels == str(path) or not Path(labels).is_file():
            raise DataError(f"no IDX labels file beside the images (looked for {labels})",
                            path=path)
        return load_idx(path, labels)
    raise DataError("unknown series format (expected .ts, .npz, .csv or an IDX images file)",
                    path=path)


def _class_labels(data: SequenceDataset) -> SequenceDataset:
    """Class labels for a classification task: whole-number float labels (an ``.npz`` ``y``
    saved as float) become classes; fractional targets and unlabelled series are errors."""
    labels = data.labels
    if labels.dtype.kind == "f":
        fractional = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0)
        if fractional.any():
            bad = labels[np.flatnonzero(fractional)[0]]
            raise DataError(f"label {bad:g} is not a class number (regression targets?); "
                            "tasks digits, vowels and uea classify series", path=data.path,
                            field="label")
        if data.label_names:
            labels, names = labels.astype(np.int64), data.label_names
        else:  # whole numbers as class names, indexed by their sorted distinct values
            labels, names = index_labels(labels, data.path, "label")
        data = SequenceDataset(data.sequences, labels, names, data.path)
    if len(labels) and labels.min() < 0:
        raise DataError("series without class labels (a .ts file needs '@classLabel true "
                        "<names>')", path=data.path, field="label")
    return data


def _splits(cfg: RunConfig) -> tuple[SequenceDataset, SequenceDataset]:
    """(train+valid, test) before normalisation."""
    d = cfg.data
    if d.path:
        full = read_series_file(d.path)
        if d.test_path:
            return full, read_series_file(d.test_path)
        train_idx, test_idx = stratified_split(full.labels, 0.2, seed=0)
        return full.subset(train_idx), full.subset(test_idx)
    if cfg.task == "digits":
        full = load_digits()
        train_idx, test_idx = stratified_split(full.labels, 0.2, seed=0)
        return full.subset(train_idx), full.subset(test_idx)
    try:
        return load_uea(d.name, "train"), load_uea(d.name, "test")
    except (KeyError, ValueError, DataError) as err:
        raise ConfigError(f"data.name: {err}") from None


def training_size(cfg: RunConfig) -> int:
    """Series in the training split (validation included), for ``train.small_data``."""
    return split_handoff.count_training(cfg, _splits)  # kept for prepare: read once


def _align_labels(test: SequenceDataset, names: list[str]) -> SequenceDataset:
    """Re-index ``test`` labels to the training label names; unknown labels are errors."""
    if test.label_names == names:
        return test
    index = {n: k for k, n in enumerate(names)}
    labels = []
    for k in test.labels:
        name = test.label_names[k] if test.label_names else str(k)
        if name not in index:
            raise DataError(f"label {name!r} does not occur in training "
                            f"(known: {', '.join(names)})", path=test.path, field="label")
        labels.append(index[name])
    return SequenceDataset(test.sequences, labels, names, test.path)


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    train_all, test = split_handoff.read_splits(cfg, _splits)
    if not artefacts:  # one class, more classes than series, ...: refused before training
        check_classes(train_all.labels, train_all.label_names, train_all.path or None,
                      what="series")
    names = artefacts["label_names"] if artefacts else train_all.label_names
    train_all = _align_labels(train_all, names)
    test = _align_labels(test, names)
    source = cfg.data.path or None
    if len(test) == 0:
        raise DataError(f"too few series ({len(train_all)}) to hold out a test split; give "
                        f"more data or a separate test file", path=source)
    trained = (artefacts or {}).get("input", {}).get("channels")
    if trained is not None and test.num_channels != trained:
        raise DataError(f"series have {test.num_channels} channels, the model was trained on "
                        f"{trained}", path=test.path)
    if test.num_channels != train_all.num_channels:
        raise DataError(f"test data has {test.num_channels} channels, training data "
                        f"{train_all.num_channels}", path=test.path)
    if artefacts:  # evaluating: only the test split is used and nothing is refitted
        train, valid = train_all, train_all
    elif cfg.data.valid_path:  # the user's own validation file: all of train_all trains
        train, valid = train_all, _align_labels(read_series_file(cfg.data.valid_path), names)
        if valid.num_channels != train.num_channels:
            raise DataError(f"validation data has {valid.num_channels} channels, training "
                            f"data {train.num_channels}", path=valid.path)
    elif not has_validation(cfg):  # no validation split (train.select=last)
        train, valid = train_all, None
    else:
        train_idx, valid_idx = stratified_split(train_all.labels, cfg.data.valid_fraction,
                                                seed=cfg.train.seed)
        train, valid = train_all.subset(train_idx), train_all.subset(valid_idx)
        if len(train) == 0 or len(valid) == 0:
            raise DataError(f"too few series ({len(train_all)}) to split into training and "
                            f"validation (data.valid_fraction={cfg.data.valid_fraction})",
                            path=source)
    test_raw = test
    stats, (train, valid, test) = normalize_splits(cfg, artefacts, train, valid, test)
    train_loader, valid_loader, test_loader, steps = loaders(cfg, train, valid, test, shard=shard)
    meta = {
        "task": cfg.task, "kind": "sequence_classification", "label_names": names,
        "input": {"type": "float", "layout": "NTC", "channels": train.num_channels,
                  "dtype": "float32", "lengths": True, "max_length": int(train.max_length)},
        "normalization": stats.to_dict() if stats is not None else None,
        "counts": {"train": len(train), "valid": len(valid or ()), "test": len(test)},
    }
    model = sequence_model(cfg, len(names), input_size=train.num_channels,
                           max_length=int(train.max_length))
    # the baselines fit the whole training split (train + valid), as the archive's do
    baseline = {"kind": "series", "train_x": train_all.sequences, "train_y": train_all.labels,
                "test_x": test_raw.sequences, "test_y": test_raw.labels}
    return Prepared(model, Classification(len(names), names),
                    train_loader, valid_loader, test_loader, steps, meta,
                    train_labels=np.asarray(train.labels), baseline_data=baseline)

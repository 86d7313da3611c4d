"""What every task hands the trainer, and helpers the task modules share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mxnet import gluon

from mxlstm.blocks.models import SequenceModel
from mxlstm.config import RunConfig
from mxlstm.data.augment import AugmentedDataset
from mxlstm.data.augment_spec import build_augmentation
from mxlstm.data.batchify import pad_batchify
from mxlstm.data.batching import make_loader
from mxlstm.errors import ConfigError, DataError
from mxlstm.tasks.spec import TaskSpec
from mxlstm.training.objectives import Objective

# Keys only some tasks read. Each task module's ``IGNORED`` maps its task names to the keys
# the task does not use: `mxlstm config` leaves them out and setting one is an error.
FILE_KEYS = frozenset({"data.path", "data.test_path", "data.valid_path", "data.max_input_mb"})
SYNTHETIC_KEYS = frozenset({"data.seq_length", "data.num_train", "data.num_eval"})
COPY_KEYS = frozenset({"data.copy_length"})
TEXT_FILE_KEYS = frozenset({"data.text_field", "data.label_field", "data.header"})
TOKEN_KEYS = frozenset({"data.level", "data.max_vocab", "data.min_freq"})
EMBEDDING_KEYS = frozenset({"model.embed_size", "model.embedding_dropout"})
LM_KEYS = frozenset({"data.bptt", "model.output_dropout", "model.tie_weights"})
CLASSIFIER_KEYS = frozenset({"model.pooling", "model.head_units", "model.head_dropout"})
LOADER_KEYS = frozenset({"data.augment", "data.num_buckets", "data.num_workers"})
SERIES_MODEL_KEYS = frozenset({"model.family", "model.conv_filters", "model.series_norm",
                               "model.max_steps", "model.conv_steps",
                               "model.conv_fine_steps", "model.window_stats"})

# MXNet's pip builds (no USE_INT64_TENSOR_SIZE) allocate at most 2^31 - 1 elements per tensor.
MAX_TENSOR_ELEMENTS = 2**31 - 1
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def model_tensors(cfg: RunConfig, input_size: int, vocab_size: int | None = None,
                  num_outputs: int = 1, language_model: bool = False
                  ) -> list[tuple[int, str]]:
    """``(elements, key)`` of the weight matrices of ``cfg.model`` (biases left out), each
    with the key that makes it big; ``input_size`` = features per step (token models: the
    embedding size is used)."""
    m = cfg.model
    gates, units = _GATES[m.cell], m.hidden_size
    out = m.projection_size if m.cell == "lstm" and m.projection_size else units
    dirs = 1 if language_model or not m.bidirectional else 2
    tensors: list[tuple[int, str]] = []
    if vocab_size:
        tensors.append((vocab_size * m.embed_size, "model.embed_size"))
        input_size = m.embed_size
    if m.input_projection and not language_model:
        tensors.append((m.input_projection * input_size, "model.input_projection"))
        input_size = m.input_projection
    for layer in range(m.num_layers):
        inputs = input_size if layer == 0 else out * dirs
        top = language_model and layer == m.num_layers - 1 and m.tie_weights
        size = m.embed_size if top else out
        for _ in range(dirs):
            tensors.append((gates * units * inputs, "model.hidden_size"))
            tensors.append((gates * units * size, "model.hidden_size"))
    if language_model:
        if vocab_size and not m.tie_weights:
            tensors.append((vocab_size * out, "model.hidden_size"))
    else:
        width = out * dirs
        for units_ in head_units(m.head_units):
            tensors.append((width * units_, "model.head_units"))
            width = units_
        tensors.append((width * num_outputs, "model.hidden_size"))
    return tensors


def check_model_size(cfg: RunConfig, tensors: list[tuple[int, str]],
                     memory: int | None = None) -> None:
    """Refuse, naming the key, a model MXNet cannot allocate (a weight matrix of more than
    2^31 - 1 elements) or whose training state (weights, gradients and two optimizer
    moments, float32) does not fit in this machine's memory (``memory`` bytes)."""
    for elements, key in tensors:
        if elements > MAX_TENSOR_ELEMENTS:
            value = _value(cfg, key)
            raise ConfigError(f"config key {key}: {key}={value} needs a weight matrix of "
                              f"{elements:,} elements; MXNet allows at most 2^31 - 1 "
                              f"per tensor")
    memory = physical_memory() if memory is None else memory
    total = sum(elements for elements, _ in tensors)
    needed = 16 * total  # float32 weights, gradients and two optimizer moments
    if memory and needed > memory and tensors and cfg.train.ctx.startswith("cpu"):
        key = max(tensors)[1]
        raise ConfigError(f"config key {key}: {key}={_value(cfg, key)} makes a model of "
                          f"{total:,} weights that needs about {needed / 2**30:.0f} GiB "
                          f"to train, but this machine has {memory / 2**30:.0f} GiB")


def _value(cfg: RunConfig, key: str):
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


@dataclass
class Prepared:
    """Everything a run needs.

    ``meta`` is JSON-able and describes the model's inputs and outputs (input spec,
    label names, normalisation statistics, tokeniser) for evaluation and export;
    ``files`` are extra files (e.g. ``vocab.json``) saved beside it.
    """

    model: gluon.HybridBlock
    objective: Objective
    train_loader: Any
    valid_loader: Any
    test_loader: Any
    steps_per_epoch: int
    meta: dict
    files: dict[str, str] = field(default_factory=dict)
    sample_batch: tuple | None = None
    train_labels: np.ndarray | None = None  # class ids of the training split (baselines)
    baseline_data: dict | None = None  # train/test inputs for mxlstm.baselines (training)

    @property
    def spec(self) -> TaskSpec:
        """The typed view of :attr:`meta` (kind, inputs, labels, baseline)."""
        return TaskSpec.from_meta({**self.meta, "files": self.files or self.meta.get("files", {})})


def head_units(spec: str) -> tuple[int, ...]:
    """``'256,128'`` -> ``(256, 128)``."""
    return tuple(int(u) for u in spec.split(",") if u.strip())


def encoder_options(cfg: RunConfig, max_length: int | None = None) -> dict:
    """RecurrentLayer / cell keyword arguments from ``cfg.model``; ``max_length`` (the
    longest training series) resolves ``chrono_init=-1``."""
    m = cfg.model
    chrono = m.chrono_init
    if chrono < 0:
        if not max_length:
            raise ConfigError(f"model.chrono_init=-1 (the longest training series) is for "
                              f"series tasks, not task {cfg.task}; give a number of steps")
        chrono = max(3, int(max_length))
    options = {
        "num_layers": m.num_layers, "bidirectional": m.bidirectional, "dropout": m.dropout,
        "fused": {"auto": "auto", "true": True, "false": False}[m.fused],
        "weight_dropout": m.weight_dropout, "recurrent_dropout": m.recurrent_dropout,
        "zoneout": m.zoneout,
    }
    if m.cell == "lstm":
        options.update(forget_bias=m.forget_bias, chrono_init=chrono or None,
                       peephole=m.peephole, layer_norm=m.layer_norm,
                       cell_clip=m.cell_clip or None, projection_size=m.projection_size or None)
    return options


def sequence_model(cfg: RunConfig, num_outputs: int, vocab_size: int | None = None,
                   per_step: bool = False, input_size: int = 1,
                   max_length: int | None = None,
                   target: tuple[float, float] | None = None) -> gluon.HybridBlock:
    """The classifier / regressor / tagger of ``cfg.model`` (refused when too big for
    MXNet or this machine: ``input_size`` = features per step of numeric inputs;
    ``max_length``: the longest training series, for ``chrono_init=-1``; ``target``:
    ``(mean, std)`` the regressor's outputs are scaled back with). Series tasks with
    ``model.family=lstm_fcn``, ``model.series_norm``, ``model.max_steps`` or ``target``
    get a :class:`~mxlstm.blocks.series_model.SeriesModel`."""
    check_model_size(cfg, model_tensors(cfg, input_size, vocab_size, num_outputs))
    m = cfg.model
    series_norm = m.series_norm in ("true", "level") or (m.series_norm == "auto"
                                                         and input_size == 1)
    if vocab_size is None and not per_step and (m.family == "lstm_fcn" or series_norm
                                                or m.max_steps or target):
        from mxlstm.blocks.series_model import SeriesModel, stride_for

        filters = head_units(m.conv_filters) if m.family == "lstm_fcn" else ()
        stride = stride_for(max_length or 0, m.max_steps)
        conv_stride = stride if m.conv_steps < 0 else stride_for(max_length or 0, m.conv_steps)
        fine_stride = None if m.conv_fine_steps < 0 else stride_for(max_length or 0,
                                                                   m.conv_fine_steps)
        if fine_stride is not None and fine_stride >= conv_stride:
            fine_stride = None  # a second branch only where it adds a finer scale
        steps = -(-max_length // stride) if max_length else None
        return SeriesModel(
            num_outputs, hidden_size=m.hidden_size, cell_type=m.cell,
            series_norm=series_norm, conv_filters=filters,
            stride=stride, conv_stride=conv_stride, window_stats=m.window_stats,
            fine_stride=fine_stride, input_dropout=m.input_dropout,
            pooling=m.pooling, head_units=head_units(m.head_units),
            head_dropout=m.head_dropout, target=target,
            keep_level=m.series_norm == "level", **encoder_options(cfg, steps))
    return SequenceModel(
        num_outputs, hidden_size=m.hidden_size, cell_type=m.cell, vocab_size=vocab_size,
        embed_size=m.embed_size, embedding_dropout=m.embedding_dropout,
        input_projection=m.input_projection or None, input_dropout=m.input_dropout,
        pooling=m.pooling, head_units=head_units(m.head_units), head_dropout=m.head_dropout,
        per_step=per_step, **encoder_options(cfg, max_length))


def loaders(cfg: RunConfig, train, valid, test, pad_batchify_fn=None,
            unk_id: int | None = None,
            shard: tuple[int, int] = (0, 1)) -> tuple[Any, Any, Any, int]:
    """Seeded loaders; augmentation wraps the training split only.

    ``shard = (rank, num_workers)``: a distributed worker trains on every
    ``num_workers``-th training sample starting at ``rank`` (evaluation sets are whole).
    ``valid`` None (no validation split): the validation loader is None.
    """
    d, t = cfg.data, cfg.train
    rank, workers = shard
    if workers > 1:  # equal shards, so every worker runs the same number of steps
        usable = len(train) - len(train) % workers
        train = gluon.data.SimpleDataset([train[i] for i in range(rank, usable, workers)])
    lengths = [sample_length(train, i) for i in range(len(train))] if d.num_buckets else None
    if d.augment:
        train = AugmentedDataset(train, build_augmentation(d.augment, unk_id=unk_id),
                                 seed=t.seed)
        check_augmentation(train, cfg)
    train_batchify = pad_batchify_fn or pad_batchify()
    if d.augment:  # images of one shape: whole batches augmented (data/augment_batch.py)
        train, train_batchify = train.for_loader(train_batchify)
    train_loader = make_loader(train, t.batch_size, True, t.seed, lengths=lengths,
                               num_buckets=d.num_buckets or None, num_workers=d.num_workers,
                               batchify_fn=train_batchify)
    kwargs = {"batchify_fn": pad_batchify_fn}
    valid_loader = None if valid is None else make_loader(valid, t.eval_batch_size, False,
                                                          t.seed, **kwargs)
    test_loader = make_loader(test, t.eval_batch_size, False, t.seed, **kwargs)
    steps = len(train_loader)
    if t.max_batches:
        steps = min(steps, t.max_batches)
    return train_loader, valid_loader, test_loader, steps


def check_augmentation(train, cfg: RunConfig) -> None:
    """Apply ``data.augment`` to the first training sample now, so that an augmentation
    that does not fit the task's samples is refused before the run directory is made."""
    if len(train) == 0:
        return
    try:
        train[0]
    except (DataError, ValueError, TypeError, IndexError) as err:
        message = getattr(err, "message", None) or str(err)
        raise ConfigError(f"data.augment={cfg.data.augment!r} does not fit the samples of "
                          f"task {cfg.task} ({message})") from None


def sample_length(dataset, index: int) -> int:
    return int(dataset[index][-1])

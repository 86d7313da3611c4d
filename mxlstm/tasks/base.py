"""What every task hands the trainer, and helpers the task modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mxnet import gluon

from mxlstm.data.augment import AugmentedDataset
from mxlstm.data.augment_spec import build_augmentation
from mxlstm.data.batching import make_loader
from mxlstm.errors import ConfigError, DataError
from mxlstm.models import SequenceModel
from mxlstm.training.config import RunConfig
from mxlstm.training.objectives import Objective


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


def head_units(spec: str) -> tuple[int, ...]:
    """``'256,128'`` -> ``(256, 128)``."""
    return tuple(int(u) for u in spec.split(",") if u.strip())


def encoder_options(cfg: RunConfig) -> dict:
    """RecurrentLayer / cell keyword arguments from ``cfg.model``."""
    m = cfg.model
    options = {
        "num_layers": m.num_layers, "bidirectional": m.bidirectional, "dropout": m.dropout,
        "fused": {"auto": "auto", "true": True, "false": False}[m.fused],
        "weight_dropout": m.weight_dropout, "recurrent_dropout": m.recurrent_dropout,
        "zoneout": m.zoneout,
    }
    if m.cell == "lstm":
        options.update(forget_bias=m.forget_bias, chrono_init=m.chrono_init or None,
                       peephole=m.peephole, layer_norm=m.layer_norm,
                       cell_clip=m.cell_clip or None, projection_size=m.projection_size or None)
    return options


def sequence_model(cfg: RunConfig, num_outputs: int, vocab_size: int | None = None,
                   per_step: bool = False) -> SequenceModel:
    """The classifier / regressor / tagger of ``cfg.model``."""
    m = cfg.model
    return SequenceModel(
        num_outputs, hidden_size=m.hidden_size, cell_type=m.cell, vocab_size=vocab_size,
        embed_size=m.embed_size, embedding_dropout=m.embedding_dropout,
        input_projection=m.input_projection or None, input_dropout=m.input_dropout,
        pooling=m.pooling, head_units=head_units(m.head_units), head_dropout=m.head_dropout,
        per_step=per_step, **encoder_options(cfg))


def loaders(cfg: RunConfig, train, valid, test, pad_batchify_fn=None,
            unk_id: int | None = None,
            shard: tuple[int, int] = (0, 1)) -> tuple[Any, Any, Any, int]:
    """Seeded loaders; augmentation wraps the training split only.

    ``shard = (rank, num_workers)``: a distributed worker trains on every
    ``num_workers``-th training sample starting at ``rank`` (evaluation sets are whole).
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
    train_loader = make_loader(train, t.batch_size, True, t.seed, lengths=lengths,
                               num_buckets=d.num_buckets or None, num_workers=d.num_workers,
                               batchify_fn=pad_batchify_fn)
    kwargs = {"batchify_fn": pad_batchify_fn}
    valid_loader = make_loader(valid, t.eval_batch_size, False, t.seed, **kwargs)
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

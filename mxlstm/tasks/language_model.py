"""Word- or character-level language modelling with truncated BPTT.

Default data: Jane Austen's novels, train = Emma, Mansfield Park, Pride and Prejudice,
Sense and Sensibility; valid = Northanger Abbey; test = Persuasion (whole unseen novels).
A user corpus (``data.path``, comma-separated files) is cut 90/5/5 in reading order.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from gluonnlp import Vocab

from mxlstm.blocks.models import LanguageModel
from mxlstm.config import RunConfig
from mxlstm.data.batching import lm_batches
from mxlstm.data.text import UNK, build_vocab, encode, load_austen, load_corpus
from mxlstm.errors import DataError
from mxlstm.tasks.base import (
    CLASSIFIER_KEYS,
    COPY_KEYS,
    LOADER_KEYS,
    SERIES_MODEL_KEYS,
    SYNTHETIC_KEYS,
    TEXT_FILE_KEYS,
    Prepared,
    check_model_size,
    encoder_options,
    model_tensors,
)
from mxlstm.training.objectives import LanguageModelling

PRESETS = {
    "lm": {"model.embed_size": 200, "model.hidden_size": 200, "model.num_layers": 2,
           "model.tie_weights": True, "model.embedding_dropout": 0.1,
           "model.input_dropout": 0.3, "model.output_dropout": 0.3,
           "model.weight_dropout": 0.2, "model.dropout": 0.2, "data.max_vocab": 10000,
           "train.epochs": 6, "train.batch_size": 32, "train.lr": 3e-3,
           "train.clip_norm": 0.25, "train.eval_batch_size": 32},
}
# Keys the language model does not read: its own BPTT batches (no loaders, augmentation or
# buckets), a 90/5/5 cut (no valid_fraction), one direction, no classifier head.
IGNORED = {"lm": SYNTHETIC_KEYS | COPY_KEYS | TEXT_FILE_KEYS | CLASSIFIER_KEYS | LOADER_KEYS
           | SERIES_MODEL_KEYS | {"train.ensemble", "train.small_data"}
           | {"data.name", "data.max_length", "data.valid_fraction", "data.normalize",
              "model.bidirectional", "model.input_projection"}}


class BPTTLoader:
    """Re-iterable truncated-BPTT batches ``(ids (N, T), targets (N, T))`` as NDArrays."""

    def __init__(self, ids: np.ndarray, batch_size: int, bptt: int,
                 path: str | None = None, split: str = "corpus") -> None:
        self.ids, self.batch_size, self.bptt = ids, batch_size, bptt
        rows = len(ids) // batch_size
        if rows < 2:
            raise DataError(f"{split} of {len(ids)} tokens is too short for batch size "
                            f"{batch_size} (needs {2 * batch_size})", path=path or None)
        self._len = (rows - 1 + bptt - 1) // bptt

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        for data, target in lm_batches(self.ids, self.batch_size, self.bptt, layout="NT"):
            yield mx.nd.array(data, dtype="int32"), mx.nd.array(target, dtype="int32")


def _corpora(cfg: RunConfig) -> tuple[list[str], list[str], list[str]]:
    level = cfg.data.level
    if not cfg.data.path:
        return tuple(load_austen(split, level) for split in ("train", "valid", "test"))
    def corpus(spec: str) -> list[str]:
        return load_corpus([p.strip() for p in spec.split(",") if p.strip()], level)

    tokens = corpus(cfg.data.path)
    valid = corpus(cfg.data.valid_path) if cfg.data.valid_path else None
    if cfg.data.test_path:
        test = corpus(cfg.data.test_path)
        if valid is not None:
            return tokens, valid, test
        cut = int(0.95 * len(tokens))
        return tokens[:cut], tokens[cut:], test
    if valid is not None:
        cut = int(0.95 * len(tokens))
        return tokens[:cut], valid, tokens[cut:]
    a, b = int(0.9 * len(tokens)), int(0.95 * len(tokens))
    return tokens[:a], tokens[a:b], tokens[b:]


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    train, valid, test = _corpora(cfg)
    if artefacts:
        vocab = Vocab.from_json(artefacts["files"]["vocab.json"])
    else:
        vocab = build_vocab([train], min_freq=cfg.data.min_freq, max_size=cfg.data.max_vocab)
    ids = [encode(tokens, vocab) for tokens in (train, valid, test)]
    t = cfg.train
    m = cfg.model
    check_model_size(cfg, model_tensors(cfg, m.embed_size, len(vocab), language_model=True))
    options = encoder_options(cfg)
    options.pop("num_layers")
    options.pop("bidirectional")
    model = LanguageModel(len(vocab), m.embed_size, m.hidden_size, m.num_layers, m.cell,
                          tie_weights=m.tie_weights, embedding_dropout=m.embedding_dropout,
                          input_dropout=m.input_dropout, output_dropout=m.output_dropout,
                          **options)
    rank, workers = shard
    part = len(ids[0]) // workers
    train_ids = ids[0][rank * part:(rank + 1) * part]  # each worker its own stretch
    path, test_path = (",".join(p.strip() for p in spec.split(",") if p.strip())
                       for spec in (cfg.data.path, cfg.data.test_path or cfg.data.path))
    if not artefacts:
        train_loader = BPTTLoader(train_ids, t.batch_size, cfg.data.bptt, path,
                                  "training split")
        valid_loader = BPTTLoader(ids[1], t.eval_batch_size, cfg.data.bptt, path,
                                  "validation split")
    test_loader = BPTTLoader(ids[2], t.eval_batch_size, cfg.data.bptt, test_path, "test split")
    if artefacts:  # evaluating: only the test split is used
        train_loader = valid_loader = test_loader
    steps = min(len(train_loader), t.max_batches) if t.max_batches else len(train_loader)
    meta = {
        "task": cfg.task, "kind": "language_model", "label_names": [],
        "input": {"type": "tokens", "layout": "NT", "dtype": "int32", "lengths": False,
                  "vocab": "vocab.json", "vocab_size": len(vocab), "unk_id": vocab[UNK],
                  "tokenizer": cfg.data.level, "states": True},
        "counts": {"train": len(ids[0]), "valid": len(ids[1]), "test": len(ids[2])},
        "unk_rate_test": float(np.mean(ids[2] == vocab[UNK])),
    }
    return Prepared(model, LanguageModelling(), train_loader, valid_loader, test_loader, steps,
                    meta, {"vocab.json": vocab.to_json()})

"""Text classification: tokenise, build a vocabulary on the training split, embed, classify.

Default data: the embedded VADER movie-review sentences (labels from the sign of the mean
human rating) with the standard split ``RandomState(0).permutation``, 80/10/10. A user
file (TSV/CSV/JSONL, ``data.path``) without ``data.test_path`` is split the same way.
"""

from __future__ import annotations

import numpy as np
from gluonnlp import Vocab
from mxnet import gluon

from mxlstm.config import RunConfig
from mxlstm.data.batchify import pad_batchify
from mxlstm.data.text import (
    PAD,
    UNK,
    TextDataset,
    build_vocab,
    encode,
    load_movie_reviews,
    load_text_classification,
    standard_split,
    tokenize,
)
from mxlstm.data.validate import check_classes
from mxlstm.errors import DataError
from mxlstm.tasks.base import (
    COPY_KEYS,
    LM_KEYS,
    SERIES_MODEL_KEYS,
    SYNTHETIC_KEYS,
    Prepared,
    loaders,
    sequence_model,
)
from mxlstm.training.objectives import Classification
from mxlstm.training.selection import has_validation

PRESETS = {
    "text": {"model.embed_size": 128, "model.hidden_size": 128, "model.bidirectional": True,
             "model.pooling": "max", "model.embedding_dropout": 0.1, "model.input_dropout": 0.3,
             "model.head_dropout": 0.3, "train.epochs": 6, "train.lr": 2e-3,
             "train.batch_size": 64, "data.max_length": 64, "data.min_freq": 2,
             "data.num_buckets": 8,
             # three seeds averaged: 81.0% against 79.6% for one model (docs/results.md)
             "train.ensemble": 3},
}
IGNORED = {"text": SYNTHETIC_KEYS | COPY_KEYS | LM_KEYS | SERIES_MODEL_KEYS
                    | {"data.name", "data.normalize", "train.small_data"}}


def _load(cfg: RunConfig, training: bool = True
          ) -> tuple[TextDataset, TextDataset, TextDataset | None]:
    """(train, valid, test) texts; valid is None when it must be carved from train, or
    when there is none (``data.valid_fraction=0``: the development part trains too).
    ``training``: refuse class sets that cannot be learnt (one class, a class per row)."""
    d = cfg.data
    own_valid = training and bool(d.valid_path)  # all of the training part then trains
    no_valid = training and not has_validation(cfg)
    if not d.path:
        full = load_movie_reviews()
    else:
        full = load_text_classification(d.path, d.text_field, d.label_field,
                                        header=d.header)
        if training:
            check_classes(full.label_ids, full.label_names, full.path, field=d.label_field)
        if d.test_path:
            test = load_text_classification(d.test_path, d.text_field, d.label_field,
                                            header=d.header)
            return full, _own_valid(cfg) if own_valid else None, test
    train_idx, dev_idx, test_idx = standard_split(len(full), seed=0)
    if own_valid or no_valid:
        return (full.subset(np.sort(np.concatenate([train_idx, dev_idx]))),
                _own_valid(cfg) if own_valid else None, full.subset(test_idx))
    return full.subset(train_idx), full.subset(dev_idx), full.subset(test_idx)


def _own_valid(cfg: RunConfig) -> TextDataset:
    d = cfg.data
    return load_text_classification(d.valid_path, d.text_field, d.label_field, header=d.header)


def encode_texts(dataset: TextDataset, vocab, level: str, max_length: int,
                 label_names: list[str]) -> gluon.data.SimpleDataset:
    """``(ids (T,) int32, label, T)`` samples; empty texts are errors."""
    index = {name: k for k, name in enumerate(label_names)}
    samples = []
    lines = dataset.lines or range(1, len(dataset) + 1)  # line numbers in dataset.path
    for line, text, label in zip(lines, dataset.texts, dataset.labels):
        if label not in index:
            raise DataError(f"label {label!r} does not occur in training (known: "
                            f"{', '.join(label_names)})", path=dataset.path, line=line,
                            field="label")
        ids = encode(tokenize(text, level), vocab)
        if max_length:
            ids = ids[:max_length]
        if len(ids) == 0:
            raise DataError("empty text", path=dataset.path, line=line, field="text")
        samples.append((ids, np.int32(index[label]), len(ids)))
    return gluon.data.SimpleDataset(samples)


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    train, valid, test = _load(cfg, training=not artefacts)
    if valid is None and artefacts:  # evaluating: only the test split is used
        valid = train
    elif valid is None and cfg.data.valid_fraction > 0:
        n = len(train)
        perm = np.random.RandomState(cfg.train.seed).permutation(n)
        cut = n - max(1, int(cfg.data.valid_fraction * n))
        train, valid = train.subset(np.sort(perm[:cut])), train.subset(np.sort(perm[cut:]))
    sizes = [len(s) for s in (train, valid, test) if s is not None]
    if not artefacts and min(sizes) == 0:
        raise DataError(f"too few examples for a training, validation and test split (got "
                        f"{', '.join(map(str, sizes))})", path=cfg.data.path or None)
    level = cfg.data.level
    if artefacts:
        vocab = Vocab.from_json(artefacts["files"]["vocab.json"])
        names = artefacts["label_names"]
    else:
        vocab = build_vocab([tokenize(t, level) for t in train.texts],
                            min_freq=cfg.data.min_freq, max_size=cfg.data.max_vocab)
        names = train.label_names
    sets = [None if s is None else encode_texts(s, vocab, level, cfg.data.max_length, names)
            for s in (train, valid, test)]
    pad_id = vocab[PAD]
    train_loader, valid_loader, test_loader, steps = loaders(
        cfg, *sets, pad_batchify_fn=pad_batchify(pad_val=pad_id), unk_id=vocab[UNK],
        shard=shard)
    meta = {
        "task": cfg.task, "kind": "text_classification", "label_names": names,
        "input": {"type": "tokens", "layout": "NT", "dtype": "int32", "lengths": True,
                  "vocab": "vocab.json", "vocab_size": len(vocab), "pad_id": pad_id,
                  "unk_id": vocab[UNK], "tokenizer": level, "max_length": cfg.data.max_length},
        "counts": {"train": len(train), "valid": len(valid or ()), "test": len(test)},
    }
    files = {"vocab.json": vocab.to_json()}
    model = sequence_model(cfg, len(names), vocab_size=len(vocab))
    return Prepared(model, Classification(len(names), names), train_loader, valid_loader,
                    test_loader, steps, meta, files,
                    train_labels=np.array([label for _, label, _ in sets[0]]),
                    baseline_data={"kind": "text", "vocab_size": len(vocab),
                                   "num_classes": len(names),
                                   "train_x": [ids for ids, _, _ in sets[0]],
                                   "train_y": [int(y) for _, y, _ in sets[0]],
                                   "test_x": [ids for ids, _, _ in sets[2]],
                                   "test_y": [int(y) for _, y, _ in sets[2]]})

"""Long-memory tasks where an LSTM must beat a plain RNN: adding and copy memory.

Train, validation and test sets are drawn from different seeds
(``train.seed``, ``train.seed + 1``, ``train.seed + 2``) and have fixed length, so
``valid_length = T`` for every sequence.
"""

from __future__ import annotations

from mxnet import gluon

from mxlstm.config import RunConfig
from mxlstm.data.batchify import pad_batchify
from mxlstm.data.synthetic import adding_problem, copy_memory
from mxlstm.tasks.base import (
    COPY_KEYS,
    EMBEDDING_KEYS,
    FILE_KEYS,
    LM_KEYS,
    SERIES_MODEL_KEYS,
    TEXT_FILE_KEYS,
    TOKEN_KEYS,
    Prepared,
    loaders,
    sequence_model,
)
from mxlstm.training.objectives import Regression, SequenceTagging

PRESETS = {
    "adding": {"model.hidden_size": 64, "train.epochs": 10, "train.lr": 1e-2,
               "train.batch_size": 64, "train.clip_norm": 1.0, "data.seq_length": 100,
               "data.num_train": 20000, "data.num_eval": 2000},
    "copy": {"model.hidden_size": 128, "model.embed_size": 16, "train.epochs": 10,
             "train.lr": 3e-3, "train.batch_size": 64, "train.clip_norm": 1.0,
             "data.seq_length": 100, "data.num_train": 20000, "data.num_eval": 1000},
}
NUM_SYMBOLS = 8
# Generated data: no files, fields, vocabulary, split fraction or normalisation; adding
# reads two numbers per step (no embedding), copy tags every step (no pooling).
_NOT_SYNTHETIC = (FILE_KEYS | TEXT_FILE_KEYS | TOKEN_KEYS | LM_KEYS
                  | {"data.name", "data.max_length", "data.valid_fraction", "data.normalize",
                     "train.small_data"})
IGNORED = {"adding": _NOT_SYNTHETIC | EMBEDDING_KEYS | COPY_KEYS | SERIES_MODEL_KEYS,
           "copy": _NOT_SYNTHETIC | SERIES_MODEL_KEYS | {"model.pooling"}}


def _samples(x, y):
    return gluon.data.SimpleDataset([(x[i], y[i], x.shape[1]) for i in range(len(x))])


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    d, seed = cfg.data, cfg.train.seed
    sizes = (d.num_train, d.num_eval, d.num_eval)
    if cfg.task == "adding":
        sets = [_samples(*adding_problem(n, d.seq_length, seed=seed + k))
                for k, n in enumerate(sizes)]
        batchify = pad_batchify(label_dtype="float32")
        model = sequence_model(cfg, 1, input_size=2)
        objective = Regression()
        meta_input = {"type": "float", "layout": "NTC", "channels": 2, "dtype": "float32",
                      "lengths": True}
        labels: list[str] = []
    else:
        sets = [_samples(*copy_memory(n, d.copy_length, d.seq_length, NUM_SYMBOLS,
                                      seed=seed + k)) for k, n in enumerate(sizes)]
        batchify = pad_batchify(label_dtype="int32")
        model = sequence_model(cfg, NUM_SYMBOLS + 1, vocab_size=NUM_SYMBOLS + 2, per_step=True)
        objective = SequenceTagging(NUM_SYMBOLS + 1)
        meta_input = {"type": "tokens", "layout": "NT", "dtype": "int32", "lengths": True,
                      "vocab_size": NUM_SYMBOLS + 2}
        labels = ["blank"] + [str(k) for k in range(1, NUM_SYMBOLS + 1)]
    train_loader, valid_loader, test_loader, steps = loaders(
        cfg, *sets, pad_batchify_fn=batchify, shard=shard)
    meta = {"task": cfg.task, "kind": "regression" if cfg.task == "adding" else "tagging",
            "label_names": labels, "input": meta_input, "sequence_length": d.seq_length,
            "copy_length": d.copy_length,
            "counts": dict(zip(("train", "valid", "test"), sizes))}
    return Prepared(model, objective, train_loader, valid_loader, test_loader, steps, meta)

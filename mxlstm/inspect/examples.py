"""What the ``inspect`` command looks at: a trained run's model and the examples of its
test split (or of ``--data``), with the tokens to label time steps.

Sequence and text tasks: one example per test sequence, in the loader's order. Language
models: the test token stream (the held-out novel for the default corpus), cut into
consecutive windows of ``steps`` tokens; window ``I`` is read with the state left by
window ``I - 1`` (warm state), as the model reads a stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxlstm.errors import ConfigError
from mxlstm.tasks.spec import TaskSpec


@dataclass
class Examples:
    """Examples of one run: ``x`` a list of ``(T_n, C)`` or ``(T_n,)`` arrays, ``y`` their
    targets, ``spec`` the run's task spec, ``itos`` the vocabulary (token models)
    and, for language models, ``stream`` the whole id stream (``x`` then holds windows)."""

    model: object
    cfg: object
    meta: dict
    spec: TaskSpec
    x: list
    y: list
    itos: list[str] | None = None
    stream: np.ndarray | None = None
    steps: int = 0

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_lm(self) -> bool:
        return self.spec.stateful  # a language model: reads a stream, state carried

    @property
    def char_level(self) -> bool:
        return self.is_lm and self.meta["input"].get("tokenizer") == "char"

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-padded ``(x (N, T, ...), y, valid_length (N,))`` of ``indices``."""
        xs = [self.x[i] for i in indices]
        lengths = np.array([len(v) for v in xs])
        steps = int(lengths.max())
        x = np.zeros((len(xs), steps) + xs[0].shape[1:], dtype=xs[0].dtype)
        for k, v in enumerate(xs):
            x[k, :len(v)] = v
        ys = [self.y[i] for i in indices]
        if np.ndim(ys[0]) == 1 and len(ys[0]) == len(xs[0]):  # per-step targets
            y = np.zeros((len(ys), steps), dtype=np.asarray(ys[0]).dtype)
            for k, v in enumerate(ys):
                y[k, :len(v)] = v
        else:
            y = np.stack([np.asarray(v) for v in ys])
        return x, y, lengths

    def tokens(self, index: int) -> list[str] | None:
        """The tokens of example ``index`` (None for numeric series)."""
        if self.itos is None:
            return None
        return [self.itos[int(t)] for t in self.x[index]]


def check_choices(name: str, values: list[int], count: int, what: str) -> list[int]:
    """Refuse ``--index``/``--unit`` values outside ``0..count-1`` in one line."""
    for v in values:
        if not 0 <= v < count:
            raise ConfigError(f"{name} {v} is out of range: {what} has {count} "
                              f"(valid: 0..{count - 1})")
    return list(dict.fromkeys(values))


def load_examples(model_dir: str | Path, data: str | None = None, tag: str = "best",
                  steps: int = 0) -> Examples:
    """Load the run's model (checkpoint ``tag``) and the examples of its test split, or
    of ``data`` (a file in the task's training format, read as ``mxlstm evaluate --data``
    reads it). ``steps``: window length of a language model (0: 200 characters or 50
    words)."""
    from mxlstm import runs, tasks
    from mxlstm.config import apply_overrides

    cfg, meta = runs.load_run(model_dir)
    if data:
        if "data.path" in tasks.ignored_keys(cfg.task):
            raise ConfigError(f"task {cfg.task} generates its data; leave out --data (its "
                              f"test split is used)")
        cfg = apply_overrides(cfg, {"data.path": data, "data.test_path": data,
                                   "data.valid_path": ""}, "--data")
    prepared, cfg, meta = runs.load_model(model_dir, cfg, meta, tag=tag)
    vocab = meta.get("files", {}).get("vocab.json")
    itos = json.loads(vocab)["idx_to_token"] if vocab else None
    spec = prepared.spec
    if spec.stateful:  # a language model
        ids = np.asarray(prepared.test_loader.ids)
        steps = steps or (200 if meta["input"].get("tokenizer") == "char" else 50)
        count = (len(ids) - 1) // steps
        if count < 1:
            raise ConfigError(f"the text has {len(ids)} tokens, too few for one window of "
                              f"{steps} steps (--steps)")
        x = [ids[k * steps:(k + 1) * steps] for k in range(count)]
        y = [ids[k * steps + 1:(k + 1) * steps + 1] for k in range(count)]
        return Examples(prepared.model, cfg, meta, spec, x, y, itos, ids, steps)
    x, y = [], []
    per_step = getattr(prepared.model, "per_step", False)  # a tagger: labels (N, T)
    for batch in prepared.test_loader:
        data_, target, lengths = (b.asnumpy() for b in batch)
        for k, n in enumerate(lengths.astype(int)):
            x.append(data_[k, :n])
            y.append(target[k, :n] if per_step else target[k])
    return Examples(prepared.model, cfg, meta, spec, x, y, itos if x and x[0].ndim == 1
                    else None)

"""The typed description of a prepared task: what runs, export and predict read instead of
comparing kind strings or digging in the ``meta`` dict.

``TaskSpec.from_meta(meta)`` reads a run's ``meta.json`` (the dict a task's ``prepare``
builds, written unchanged to the run directory); :attr:`Prepared.spec
<mxlstm.tasks.base.Prepared>` is that spec of a prepared run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mxlstm.errors import ModelFileError
from mxlstm.kinds import KINDS, Kind


@dataclass(frozen=True)
class InputSpec:
    """The model's data input: ``type`` 'float' ``(N, T, C)`` or 'tokens' ``(N, T)``."""

    type: str
    layout: str
    dtype: str
    lengths: bool = False
    channels: int | None = None
    vocab_size: int | None = None
    max_length: int | None = None
    pad_id: int | None = None
    unk_id: int | None = None
    tokenizer: str | None = None  # 'word' | 'char'

    @property
    def tokens(self) -> bool:
        return self.type == "tokens"


def _majority(prepared) -> dict:
    from mxlstm.training.metrics import majority_baseline
    train = prepared.train_labels  # the loader would run augmentation for nothing
    if train is None:
        train = np.concatenate([b[1].asnumpy() for b in prepared.train_loader])
    test = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
    return {"majority_accuracy": majority_baseline(train, test)}


def _mean_predictor(prepared) -> dict:
    targets = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
    return {"mean_predictor_mse": float(np.var(targets))}


def _unigram(prepared) -> dict:
    from mxlstm.training.metrics import unigram_perplexity
    return {"unigram_perplexity": unigram_perplexity(
        prepared.train_loader.ids, prepared.test_loader.ids, prepared.spec.input.vocab_size)}


def _memoryless_copy(prepared) -> dict:
    from mxlstm.data.synthetic import copy_memory_baseline
    spec = prepared.spec
    return {"memoryless_nll": copy_memory_baseline(spec.copy_length, spec.sequence_length)}


BASELINES: dict[str, Callable[[Any], dict]] = {
    "majority": _majority, "mean_predictor": _mean_predictor, "unigram": _unigram,
    "memoryless_copy": _memoryless_copy,
}
# the baseline of runs whose meta.json names none (all runs so far)
DEFAULT_BASELINE = {"sequence_classification": "majority", "text_classification": "majority",
                    "regression": "mean_predictor", "language_model": "unigram",
                    "tagging": "memoryless_copy"}


@dataclass(frozen=True)
class TaskSpec:
    """Kind, inputs, outputs, baseline and export options of one task.

    ``kind``: the :class:`~mxlstm.kinds.Kind` (head name, answer form, stateful);
    ``label_names``: the classes (empty for regression and language models);
    ``baseline``: a key of :data:`BASELINES`; ``files``: extra files of the run
    (``vocab.json``).
    """

    task: str
    kind: Kind
    input: InputSpec
    label_names: tuple[str, ...] = ()
    baseline: str | None = None
    normalization: dict | None = None
    sequence_length: int | None = None
    copy_length: int | None = None
    files: dict[str, str] = field(default_factory=dict)

    # -- export options -------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        """Always exported with its states as inputs (language models)."""
        return self.kind.stateful

    @property
    def idx_to_token(self) -> list[str] | None:
        """The vocabulary of token models (from ``vocab.json``), else None."""
        text = self.files.get("vocab.json")
        return json.loads(text)["idx_to_token"] if text else None

    def outputs(self, states: list[dict], streaming: bool, per_step: bool) -> list[dict]:
        """The ``outputs`` of an export's meta.json: the head, then each new state."""
        step, head, what = ["N", "T", "K"], self.kind.head, self.kind.describes
        if self.stateful:
            first = {"name": head, "shape": ["N", "T", "V"], "description": what}
        elif streaming:
            first = {"name": head, "shape": step,
                     "description": f"{what} at every step (the head applied to each step)"}
        else:
            first = {"name": head, "shape": step if per_step else ["N", "K"],
                     "description": what}
        return [first] + [{"name": f"{s['name']}_out", "shape": s["shape"], "description":
                           "state after the last step; feed it with the next chunk"}
                          for s in states]

    def compute_baseline(self, prepared) -> dict:
        """The task's simple reference on ``prepared`` (``{}`` when it has none)."""
        return BASELINES[self.baseline](prepared) if self.baseline else {}

    # -- reading meta.json ----------------------------------------------------------------
    @classmethod
    def from_meta(cls, meta: dict) -> TaskSpec:
        """The spec of a run's ``meta`` dict (raises ModelFileError on an unknown kind)."""
        kind = KINDS.get(meta.get("kind"))
        if kind is None:
            raise ModelFileError(f"meta.json: unknown task kind {meta.get('kind')!r} "
                                 f"(known: {', '.join(KINDS)})")
        raw = meta.get("input", {})
        known = InputSpec.__dataclass_fields__
        spec = InputSpec(**{k: v for k, v in raw.items() if k in known})
        return cls(task=meta.get("task", ""), kind=kind, input=spec,
                   label_names=tuple(meta.get("label_names", ())),
                   baseline=meta.get("baseline", DEFAULT_BASELINE.get(kind.name)),
                   normalization=meta.get("normalization"),
                   sequence_length=meta.get("sequence_length"),
                   copy_length=meta.get("copy_length"), files=dict(meta.get("files", {})))

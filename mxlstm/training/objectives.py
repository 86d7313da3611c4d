"""Objectives: what a batch is, its loss and its metrics — the trainer knows only these.

An objective turns one shard of a batch (on one context) into a loss whose sum is the
shard's total loss, and tells how many items it normalises by. Batches are tuples of
NDArrays:

==========================  ======================================  ====================
objective                   batch                                   loss normaliser
==========================  ======================================  ====================
:class:`Classification`     ``x, label (N,), valid_length (N,)``    sequences
:class:`Regression`         ``x, target (N,) or (N, K), length``    sequences
:class:`SequenceTagging`    ``x, labels (N, T), valid_length``      valid steps
:class:`LanguageModelling`  ``ids (N, T), targets (N, T)``          tokens
==========================  ======================================  ====================
"""

from __future__ import annotations

from typing import Any

import mxnet as mx
from mxnet import gluon

from mxlstm.kernels.loss import softmax_nll
from mxlstm.training.metrics import (
    ClassificationMetrics,
    LanguageModelMetrics,
    RegressionMetrics,
)


def token_nll(logits, labels):
    """Negative log-likelihood of ``labels (N, T)`` under ``logits (N, T, K)``: ``(N, T)``
    (the kernel's fused operator where it is built, else ``log_softmax`` + ``pick``)."""
    return softmax_nll(mx.nd, logits, labels)


class Objective:
    """Base class. ``monitor`` names the validation metric used for model selection."""

    monitor = "loss"

    def new_metrics(self) -> Any:
        raise NotImplementedError

    def begin_epoch(self, contexts: list[mx.Context]) -> None:
        """Reset any state carried between batches (language models)."""

    def forward(self, model, shard: tuple, index: int):
        """``(loss array, outputs)`` for one shard on context number ``index``."""
        raise NotImplementedError

    def count(self, shard: tuple) -> float:
        """How many items the shard's summed loss is averaged over."""
        return shard[0].shape[0]

    def update_metrics(self, metrics, shard: tuple, outputs, loss) -> None:
        raise NotImplementedError


class Classification(Objective):
    """Softmax cross-entropy on one label per sequence."""

    monitor = "accuracy"

    def __init__(self, num_classes: int, label_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.label_names = label_names
        self._loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def new_metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes, self.label_names)

    def forward(self, model, shard, index):
        x, label, length = shard
        logits = model(x, length)
        return self._loss(logits, label), logits

    def update_metrics(self, metrics, shard, outputs, loss):
        metrics.update(shard[1].asnumpy(), outputs.asnumpy())
        metrics.update_loss(float(loss.sum().asscalar()), shard[1].shape[0])


class Regression(Objective):
    """Mean squared error on targets ``(N,)`` or ``(N, K)``."""

    monitor = "mse"

    def new_metrics(self) -> RegressionMetrics:
        return RegressionMetrics()

    def forward(self, model, shard, index):
        x, target, length = shard
        pred = model(x, length)
        pred = pred.reshape(target.shape) if pred.size == target.size else pred
        diff = pred - target
        loss = (diff * diff).reshape((diff.shape[0], -1)).mean(axis=1)
        return loss, pred

    def update_metrics(self, metrics, shard, outputs, loss):
        metrics.update(shard[1].asnumpy(), outputs.asnumpy())


class SequenceTagging(Objective):
    """Softmax cross-entropy at every valid step (labels ``(N, T)``)."""

    monitor = "accuracy"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def new_metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)

    def _mask(self, labels, length):
        steps = mx.nd.arange(labels.shape[1], ctx=labels.context).reshape((1, -1))
        return mx.nd.broadcast_lesser(steps, length.reshape((-1, 1)))

    def forward(self, model, shard, index):
        x, labels, length = shard
        logits = model(x, length)  # (N, T, K)
        return token_nll(logits, labels) * self._mask(labels, length), logits

    def count(self, shard):
        return float(shard[2].sum().asscalar())

    def update_metrics(self, metrics, shard, outputs, loss):
        mask = self._mask(shard[1], shard[2]).asnumpy()
        metrics.update(shard[1].asnumpy(), outputs.asnumpy(), mask=mask)
        metrics.update_loss(float(loss.sum().asscalar()), float(mask.sum()))


class LanguageModelling(Objective):
    """Next-token cross-entropy with hidden states carried across BPTT batches (detached)."""

    monitor = "perplexity"

    def __init__(self) -> None:
        self._states: dict[int, list] = {}

    def new_metrics(self) -> LanguageModelMetrics:
        return LanguageModelMetrics()

    def begin_epoch(self, contexts):
        self._states = {}

    def forward(self, model, shard, index):
        ids, targets = shard
        states = self._states.get(index)
        if states is None or states[0].shape[1] != ids.shape[0]:
            states = model.begin_state(ids.shape[0], ctx=ids.context)
        logits, new_states = model(ids, states)
        self._states[index] = [s.detach() for s in new_states]
        return token_nll(logits, targets), logits

    def count(self, shard):
        return shard[0].size

    def update_metrics(self, metrics, shard, outputs, loss):
        metrics.update_loss(float(loss.sum().asscalar()), shard[0].size)

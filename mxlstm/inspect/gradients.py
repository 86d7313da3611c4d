"""``gradient_flow``: how much the loss depends on each step's hidden state and input.

The gate-level forward of :mod:`mxlstm.inspect.trace` runs under autograd with a zero
"probe" added to every ``h_t`` (one per layer and direction); the probe's gradient is
``d loss / d h_t``, the full derivative through every later step. The gradient of the
encoder's input gives ``d loss / d x_t`` (after the embedding for token models). For
each ``t`` the reported number is the Frobenius norm over the batch and the units.
"""

from __future__ import annotations

from dataclasses import dataclass

import mxnet as mx
import numpy as np

from mxlstm.errors import ConfigError
from mxlstm.inspect.parts import encoder_of, head_outputs, input_stage, is_language_model
from mxlstm.inspect.trace import as_inputs, run_encoder

nd = mx.nd
KINDS = ("classification", "regression", "tagging", "language_model")
_META_KINDS = {"sequence_classification": "classification",
               "text_classification": "classification"}


@dataclass
class GradientFlow:
    """Norms per time step: ``hidden[key] (T,)`` of ``d loss / d h_t`` for each (layer,
    direction) ``key``, ``inputs (T,)`` of ``d loss / d x_t``; ``loss`` the batch's mean
    loss; ``valid_length (N,)``."""

    hidden: dict[str, np.ndarray]
    inputs: np.ndarray
    loss: float
    valid_length: np.ndarray

    def ratio(self, key: str = "l0", fraction: float = 0.1) -> float:
        """Mean norm over the earliest ``fraction`` of the steps every sequence has, over
        the mean norm of the latest ones, in the reading order of ``key``'s direction
        ('input' for ``d loss / d x_t``). Far below 1: the loss barely sees early steps."""
        norms = self.inputs if key == "input" else self.hidden[key]
        norms = norms[:int(self.valid_length.min())]
        if key.startswith("r"):
            norms = norms[::-1]
        k = max(1, int(round(fraction * len(norms))))
        late = float(norms[-k:].mean())
        return float(norms[:k].mean()) / late if late > 0 else float("nan")

    def ratios(self, fraction: float = 0.1) -> dict[str, float]:
        """:meth:`ratio` of every key and of the input."""
        return {key: self.ratio(key, fraction) for key in [*self.hidden, "input"]}


def infer_kind(model, y: np.ndarray, kind: str | None) -> str:
    """The loss for ``y``: given, or language model / regression (float targets) /
    tagging (per-step model) / classification."""
    if kind is not None:
        kind = _META_KINDS.get(kind, kind)
        if kind not in KINDS:
            raise ConfigError(f"unknown loss kind {kind!r}; choose one of {', '.join(KINDS)}")
        return kind
    if is_language_model(model):
        return "language_model"
    if y.dtype.kind == "f":
        return "regression"
    return "tagging" if getattr(model, "per_step", False) else "classification"


def loss_of(kind: str, outputs, y, valid_length):
    """Mean loss of a batch, as the task objectives compute it."""
    if kind == "regression":
        pred = outputs.reshape(y.shape) if outputs.size == y.size else outputs
        diff = pred - y
        return (diff * diff).reshape((diff.shape[0], -1)).mean(axis=1).mean()
    nll = -nd.pick(nd.log_softmax(outputs, axis=-1), y, axis=-1)
    if kind == "tagging":
        steps = nd.arange(y.shape[1], ctx=y.context).reshape((1, -1))
        mask = nd.broadcast_lesser(steps, valid_length.reshape((-1, 1)))
        return (nll * mask).sum() / mask.sum()
    return nll.mean()


def gradient_flow(model, x, y, valid_length=None, kind: str | None = None,
                  states: list | None = None, ctx: mx.Context | None = None) -> GradientFlow:
    """Norms of ``d loss / d h_t`` and ``d loss / d x_t`` for every step ``t``.

    Parameters
    ----------
    model : SequenceModel or LanguageModel
    x : array ``(N, T, C)`` or token ids ``(N, T)``
    y : array
        Labels ``(N,)``, regression targets ``(N,)``/``(N, K)``, per-step labels ``(N, T)``
        or next-token ids ``(N, T)``.
    valid_length : array (N,) or None
    kind : str or None
        One of :data:`KINDS` (or a ``meta.json`` kind); None infers it (:func:`infer_kind`).
    states : list or None
        Begin states of a language model.
    """
    encoder_of(model)  # refuses what it cannot trace, before any work
    x, lengths = as_inputs(model, x, valid_length, ctx)
    y = np.asarray(y.asnumpy() if isinstance(y, nd.NDArray) else y)
    kind = infer_kind(model, y, kind)
    y_nd = nd.array(y, ctx=x.context, dtype="float32" if kind == "regression" else "int32")
    encoder = encoder_of(model)
    with mx.autograd.pause(train_mode=False):
        enc_in = input_stage(model, x)
    enc_in.attach_grad()
    steps, n = enc_in.shape[1], enc_in.shape[0]
    probes = {}
    for layer in range(encoder.num_layers):
        for d in encoder.directions:
            size = encoder.output_size // encoder.num_directions
            probes[f"{d}{layer}"] = nd.zeros((steps, n, size), ctx=x.context)
            probes[f"{d}{layer}"].attach_grad()
    if states is not None:
        states = [s if isinstance(s, nd.NDArray) else nd.array(s, ctx=x.context)
                  for s in states]
    with mx.autograd.record(train_mode=False):
        _, out, _ = run_encoder(model, enc_in, lengths, states, probes)
        loss = loss_of(kind, head_outputs(model, out, lengths), y_nd, lengths)
    loss.backward()

    def norms(grad, axis):  # (T,)
        g = grad.asnumpy().astype(np.float64)
        return np.sqrt((g * g).sum(axis=axis))

    return GradientFlow({key: norms(p.grad, (1, 2)) for key, p in probes.items()},
                        norms(enc_in.grad, (0, 2)), float(loss.asscalar()),
                        lengths.asnumpy().astype(np.int64))

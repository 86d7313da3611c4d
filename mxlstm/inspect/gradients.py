"""``gradient_flow``: how much the loss depends on each step's hidden state and input.

The gate-level forward of :mod:`mxlstm.inspect.trace` runs under autograd with a zero
"probe" added to every ``h_t`` (one per layer and direction); the probe's gradient is
``d loss / d h_t``, the full derivative through every later step. The gradient of the
encoder's input gives ``d loss / d x_t`` (after the embedding for token models, after
the per-series normalisation and window averaging of the series model). For
each ``t`` the reported number is the Frobenius norm over the batch and the units.
"""

from __future__ import annotations

from dataclasses import dataclass

import mxnet as mx
import numpy as np

from mxlstm.errors import ConfigError
from mxlstm.inspect.parts import ModelView, view_of
from mxlstm.inspect.trace import as_inputs, reverse_steps, run_encoder
from mxlstm.kinds import KINDS, Kind

nd = mx.nd


@dataclass
class GradientFlow:
    """Norms per time step: ``hidden[key] (T,)`` of ``d loss / d h_t`` for each (layer,
    direction) ``key``, in time order for both directions (index ``t``: the state after
    input step ``t``, whichever way it was read); ``inputs (T,)`` of ``d loss / d x_t``;
    ``loss`` the batch's mean loss; ``valid_length (N,)``."""

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


def _nll(outputs, y, valid_length):
    return (-nd.pick(nd.log_softmax(outputs, axis=-1), y, axis=-1)).mean()


def _masked_nll(outputs, y, valid_length):
    nll = -nd.pick(nd.log_softmax(outputs, axis=-1), y, axis=-1)
    steps = nd.arange(y.shape[1], ctx=y.context).reshape((1, -1))
    mask = nd.broadcast_lesser(steps, valid_length.reshape((-1, 1)))
    return (nll * mask).sum() / mask.sum()


def _mse(outputs, y, valid_length):
    pred = outputs.reshape(y.shape) if outputs.size == y.size else outputs
    diff = pred - y
    return (diff * diff).reshape((diff.shape[0], -1)).mean(axis=1).mean()


# the mean loss of a batch as the task objectives compute it, by Kind.answer
LOSSES = {"labels": _nll, "step_labels": _masked_nll, "values": _mse, "tokens": _nll}


def answer_of(view: ModelView, y: np.ndarray, kind: str | Kind | None) -> str:
    """The :attr:`Kind.answer <mxlstm.kinds.Kind.answer>` that picks the loss: that of
    ``kind`` (a name of :data:`mxlstm.kinds.KINDS`, e.g. ``meta.json``'s, or a ``Kind``
    such as ``TaskSpec.kind``), or inferred: a language model's tokens, values for float
    targets, per-step labels of a per-step model, else labels."""
    if isinstance(kind, Kind):
        return kind.answer
    if kind is not None:
        if kind not in KINDS:
            raise ConfigError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
        return KINDS[kind].answer
    if view.stateful:
        return "tokens"
    if y.dtype.kind == "f":
        return "values"
    return "step_labels" if view.model.per_step else "labels"


def gradient_flow(model, x, y, valid_length=None, kind: str | Kind | None = None,
                  states: list | None = None, ctx: mx.Context | None = None) -> GradientFlow:
    """Norms of ``d loss / d h_t`` and ``d loss / d x_t`` for every step ``t``.

    Parameters
    ----------
    model : SequenceModel, SeriesModel or LanguageModel
    x : array ``(N, T, C)`` or token ids ``(N, T)``
    y : array
        Labels ``(N,)``, regression targets ``(N,)``/``(N, K)``, per-step labels ``(N, T)``
        or next-token ids ``(N, T)``.
    valid_length : array (N,) or None
    kind : str, Kind or None
        The task kind (a ``meta.json`` kind, or ``TaskSpec.kind``); None infers the loss
        (:func:`answer_of`).
    states : list or None
        Begin states of a language model.

    A series model's gradients are those through its recurrent branch: its convolutional
    branch reads the (normalised, averaged) series detached, and ``T`` is that of the
    series the recurrent branch read. A regressor with target scaling reports the loss it
    was trained on (squared error / target variance).
    """
    view = view_of(model)  # refuses what it cannot trace, before any work
    x, lengths = as_inputs(view, x, valid_length, ctx)
    y = np.asarray(y.asnumpy() if isinstance(y, nd.NDArray) else y)
    loss_fn = LOSSES[answer_of(view, y, kind)]
    y_nd = nd.array(y, ctx=x.context, dtype="float32" if loss_fn is _mse else "int32")
    encoder = view.encoder
    with mx.autograd.pause(train_mode=False):
        enc_in, enc_lengths = view.stage(x, lengths)
        side = {name: v.detach() for name, v in view.side(x, lengths).items()}
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
        _, out, _ = run_encoder(view, enc_in, enc_lengths, states, probes)
        loss = loss_fn(view.head(out, enc_lengths, side), y_nd, enc_lengths)
        if loss_fn is _mse:
            loss = loss * view.mse_scale
    loss.backward()

    def norms(grad, axis):  # (T,)
        g = grad.asnumpy().astype(np.float64)
        return np.sqrt((g * g).sum(axis=axis))

    full = float(enc_lengths.min().asscalar()) == steps
    # a reverse direction's probes are indexed in its reading order: put them back in time
    hidden = {key: norms(reverse_steps(p.grad, enc_lengths, full) if key.startswith("r")
                         else p.grad, (1, 2)) for key, p in probes.items()}
    return GradientFlow(hidden,
                        norms(enc_in.grad, (0, 2)), float(loss.asscalar()),
                        enc_lengths.asnumpy().astype(np.int64))

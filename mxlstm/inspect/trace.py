"""``trace``: a trained model's recurrent layers run gate by gate with its own weights.

The encoder of every task model (:class:`~mxlstm.recurrent.RecurrentLayer`) keeps one
parameter layout for its fused kernel and its gate-level cells, so a model trained on the
fused path can be re-run through the explicit equations (:mod:`mxlstm.inspect.gates`) and
every gate, candidate and cell state read out. :func:`model_outputs` finishes the forward
pass from a trace; it equals the model's own (fused) forward. The series model (LSTM-FCN)
is traced through its recurrent branch, after its own input stage (:mod:`~mxlstm.inspect.parts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

from mxlstm.errors import ConfigError
from mxlstm.inspect.gates import PARTS, run_direction
from mxlstm.inspect.parts import ModelView, layer_cells, materialize, view_of

nd = mx.nd


@dataclass
class Trace:
    """What :func:`trace` returns.

    ``parts[key][name]``: ``(N, T, H)`` float32 arrays for each (layer, direction) ``key``
    (``'l0'``, ``'r0'``, ``'l1'``, ...) and each name of
    :data:`~mxlstm.inspect.gates.PARTS` (LSTM ``i f o g c h``, GRU ``r z n h``, RNN
    ``a h``), in reading order (the reverse direction's steps are put back in place) and
    zero past each sequence's length. ``outputs (N, T, D*H)``: the encoder's output;
    ``final_states``: the encoder's final states, each ``(L*D, N, H)`` (LSTM ``[h, c]``);
    ``inputs (N, T, E)``: what the encoder read (after embedding / projection, or a series
    model's per-series normalisation and window averaging); ``stride``: input steps
    averaged into one traced step (a series model's ``max_steps``; ``T`` and
    ``valid_length`` are then those of the averaged series); ``side``: what a branch
    beside the encoder read (a series model's ``conv_input (N, T'', C')`` and
    ``conv_valid_length (N,)``, at the convolutional branch's own resolution).
    """

    cell_type: str
    valid_length: np.ndarray
    parts: dict[str, dict[str, np.ndarray]]
    outputs: np.ndarray
    final_states: list[np.ndarray] = field(default_factory=list)
    inputs: np.ndarray | None = None
    stride: int = 1
    side: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.parts)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{'l0/i': (N, T, H), ..., 'valid_length': (N,), 'input': (N, T, E),
        'stride': ()}`` (for ``np.savez``)."""
        flat = {f"{key}/{name}": value for key, parts in self.parts.items()
                for name, value in parts.items()}
        flat["valid_length"] = self.valid_length
        if self.inputs is not None:
            flat["input"] = self.inputs
        flat["stride"] = np.array(self.stride)
        flat.update({f"side/{name}": value for name, value in self.side.items()})
        return flat

    def mask(self) -> np.ndarray:
        """``(N, T)`` booleans, True at valid steps."""
        steps = self.outputs.shape[1]
        return np.arange(steps)[None, :] < self.valid_length[:, None]


def as_inputs(view: ModelView, x, valid_length=None, ctx: mx.Context | None = None):
    """``(x, valid_length)`` as NDArrays on ``ctx``; lengths default to ``T``."""
    ctx = ctx or mx.cpu()
    x = x if isinstance(x, nd.NDArray) else nd.array(np.asarray(x), ctx=ctx,
                                                      dtype=np.asarray(x).dtype)
    if x.ndim not in (2, 3):
        raise ConfigError(f"expected inputs (N, T, C) or token ids (N, T), got shape {x.shape}")
    n, steps = x.shape[0], x.shape[1]
    if valid_length is None:
        valid_length = np.full(n, steps)
    lengths = np.asarray(valid_length.asnumpy() if isinstance(valid_length, nd.NDArray)
                         else valid_length).reshape(-1)
    if len(lengths) != n or lengths.min() < 1 or lengths.max() > steps:
        raise ConfigError(f"valid_length must hold {n} lengths in 1..{steps}, got {lengths}")
    if view.stateful and lengths.min() < steps:
        raise ConfigError("a language model reads whole windows: no valid_length below T")
    x, lengths = x.as_in_context(ctx), nd.array(lengths, ctx=ctx, dtype="float32")
    materialize(view, x, lengths)
    return x, lengths


def run_encoder(view: ModelView, enc_in, valid_length, states=None,
                probes: dict | None = None):
    """The gate-level forward of a model's encoder on NDArrays (records under autograd).

    ``enc_in (N, T, E)`` is what the encoder reads (:meth:`ModelView.stage` of the inputs).
    Returns ``(parts, out, finals)``: ``parts[key][name]`` as ``(T, N, H)`` NDArrays in
    reading order, ``out (N, T, D*H)`` and final states ``(L*D, N, H)`` each.
    """
    encoder = view.encoder
    cell_type = encoder.cell_type
    x = enc_in
    layer_in = nd.swapaxes(enc_in, 0, 1)  # (T, N, C)
    n = layer_in.shape[1]
    full = float(valid_length.min().asscalar()) == layer_in.shape[0]
    mask = None if full else (nd.arange(layer_in.shape[0], ctx=x.context).reshape((-1, 1))
                              < valid_length.reshape((1, -1)))
    cells = layer_cells(encoder, x.context)
    parts: dict[str, dict] = {}
    finals: list[list] = []
    for index, lc in enumerate(cells):
        if states is not None:
            begin = [s[index] for s in states]
        else:
            begin = [nd.zeros(info["shape"], ctx=x.context)
                     for info in lc.cell.state_info(n)]
        seq = reverse_steps(layer_in, valid_length, full) if lc.reverse else layer_in
        probe = None if probes is None else probes.get(lc.key)
        kept, final = run_direction(cell_type, lc.cell, lc.params, seq, mask, begin,
                                    encoder.zoneout, probe)
        if lc.reverse:
            kept = {k: reverse_steps(v, valid_length, full) for k, v in kept.items()}
        parts[lc.key] = kept
        finals.append(final)
        if index % encoder.num_directions == encoder.num_directions - 1:
            tops = [parts[c.key]["h"] for c in cells if c.layer == lc.layer]
            layer_in = tops[0] if len(tops) == 1 else nd.concat(*tops, dim=2)
    stacked = [nd.stack(*[f[k] for f in finals], axis=0) for k in range(len(finals[0]))]
    return parts, nd.swapaxes(layer_in, 0, 1), stacked


def reverse_steps(x, valid_length, full: bool):
    """``x (T, N, ...)`` with each sequence's first ``valid_length`` steps reversed
    (``full``: every sequence holds ``T`` steps)."""
    if full:
        return nd.reverse(x, axis=0)
    return nd.SequenceReverse(x, valid_length, use_sequence_length=True)


def trace(model, x, valid_length=None, states: list | None = None,
          ctx: mx.Context | None = None) -> Trace:
    """Run ``model``'s recurrent layers gate by gate with its own weights.

    Parameters
    ----------
    model : SequenceModel, SeriesModel or LanguageModel
        Initialised (e.g. from :func:`mxlstm.runs.load_model`), any cell type. A series
        model's recurrent branch is traced after its own input stage (per-series
        normalisation, window averaging).
    x : array
        Inputs ``(N, T, C)`` or token ids ``(N, T)``.
    valid_length : array (N,) or None
        Lengths of right-padded sequences (None: all ``T``).
    states : list of arrays (L*D, N, H) or None
        Begin states (language models carrying state across windows); None for zeros.

    Returns
    -------
    Trace
        Per (layer, direction) and part, ``(N, T, H)`` numpy arrays (see :class:`Trace`).
    """
    view = view_of(model)  # refuses what it cannot trace, before any work
    x, lengths = as_inputs(view, x, valid_length, ctx)
    if states is not None:
        states = [s if isinstance(s, nd.NDArray) else nd.array(s, ctx=x.context)
                  for s in states]
    with mx.autograd.pause(train_mode=False):
        enc_in, enc_lengths = view.stage(x, lengths)
        side = {name: v.asnumpy() for name, v in view.side(x, lengths).items()}
        parts, out, finals = run_encoder(view, enc_in, enc_lengths, states)
    cell_type = view.encoder.cell_type
    numpy_parts = {key: {name: np.ascontiguousarray(np.swapaxes(v.asnumpy(), 0, 1))
                         for name, v in kept.items() if name in PARTS[cell_type]}
                   for key, kept in parts.items()}
    return Trace(cell_type, enc_lengths.asnumpy().astype(np.int64), numpy_parts,
                 out.asnumpy(), [f.asnumpy() for f in finals], enc_in.asnumpy(), view.stride,
                 side)


def model_outputs(model, tr: Trace, ctx: mx.Context | None = None) -> np.ndarray:
    """The model's outputs computed from a trace's top-layer ``h`` (plus, for a series
    model, its convolutional branch on ``tr.side``): logits ``(N, T, V)`` of a language
    model, ``(N, T, K)`` per step or ``(N, K)`` pooled."""
    ctx = ctx or mx.cpu()
    view = view_of(model)
    top = max(int(key[1:]) for key in tr.parts)
    out = np.concatenate([tr.parts[key]["h"] for key in tr.parts if int(key[1:]) == top],
                         axis=2)  # (N, T, D*H), forward then reverse
    side = {name: nd.array(v, ctx=ctx) for name, v in tr.side.items()}
    with mx.autograd.pause(train_mode=False):
        out = view.head(nd.array(out, ctx=ctx),
                        nd.array(tr.valid_length, ctx=ctx, dtype="float32"), side)
    return out.asnumpy()

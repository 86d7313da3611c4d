"""Inference-only graphs built around a trained model for export; they share its Parameters.

=============================  =====================================  =====================
graph                          inputs                                 outputs
=============================  =====================================  =====================
:class:`StatefulLanguageModel`  ids ``(N, T)``, states ``(L, N, H)``   logits, new states
:class:`StreamingSequenceModel` ``x``, states                          per-step outputs,
                                                                       new states
:class:`FixedLengthModel`       ``x`` whose rows all hold ``T`` steps   pooled ``(N, K)``
                                (no ``valid_length``)                  or per step
=============================  =====================================  =====================

:class:`LayerwiseFused` runs a trained recurrent layer as one 1-layer fused ``RNN`` op per
layer (and, with ``split_directions``, per direction): the encoder of the fixed-length
graphs for MXNet and for ONNX.
"""

from __future__ import annotations

from mxnet.gluon import HybridBlock

from mxlstm import fused as fused_ops
from mxlstm.recurrent import RecurrentLayer
from mxlstm.sequence import zeros_like_state


class StatefulLanguageModel(HybridBlock):
    """A :class:`~mxlstm.models.LanguageModel` with its states as separate graph inputs.

    Inputs: ids ``(N, T)``, then each state ``(L, N, H)``. Outputs: logits ``(N, T, V)``,
    then the new states.
    """

    def __init__(self, lm: HybridBlock) -> None:
        super().__init__()
        self.lm = lm

    def hybrid_forward(self, F, ids, *states):
        logits, new = self.lm(ids, list(states))
        return (logits, *new)


class StreamingSequenceModel(HybridBlock):
    """A trained unidirectional :class:`~mxlstm.models.SequenceModel` run chunk by chunk.

    The encoder is a new :class:`~mxlstm.recurrent.RecurrentLayer` built with
    ``return_states=True`` that *shares* the trained layer's Parameter objects (same
    prefix, ``params=`` the trained ``ParameterDict``); embedding, projection and head are
    the trained blocks themselves. The head is applied at every step, so with
    ``pooling='last'`` the output at step ``t`` is the classifier's answer for the
    sequence ending at ``t``.

    Inputs: ``x (N, T, C)`` or ids ``(N, T)``, then states each ``(L, N, H)``.
    Outputs: per-step ``(N, T, K)``, then the new states.
    """

    def __init__(self, model: HybridBlock, cell_type: str, options: dict) -> None:
        super().__init__()
        trained = model.encoder
        self.embedding = model.embedding
        self.projection = model.projection
        self.input_dropout = model.input_dropout
        self.encoder = RecurrentLayer(cell_type, trained.hidden_size, return_states=True,
                                      prefix=trained.prefix, params=trained.params, **options)
        self.head = model.head

    def hybrid_forward(self, F, x, *states):
        for stage in (self.embedding, self.projection, self.input_dropout):
            if stage is not None:
                x = stage(x)
        out, new = self.encoder(x, None, list(states))
        return (self.head(out), *new)


def streaming_refusal(model: HybridBlock, kind: str) -> str | None:
    """Why a model cannot be exported for streaming, or None."""
    if kind == "language_model":
        return None
    if getattr(model, "export_refusal", None):  # SeriesModel, ensembles
        return model.export_refusal
    if model.bidirectional:
        return ("the model is bidirectional: its reverse direction reads each sequence "
                "from the end, which a stream does not have yet")
    if not model.per_step and model.pooling != "last":
        return (f"pooling={model.pooling!r} summarises all steps; streaming needs "
                f"pooling='last' (the head then reads the current step)")
    return None


def data_length(prepared) -> tuple[int | None, int, int]:
    """``(T, shortest, longest)`` over the run's evaluation data; ``T`` is None unless every
    sequence has the same length (then a graph without ``valid_length`` is exact)."""
    lengths: set[int] = set()
    for loader in (prepared.valid_loader, prepared.test_loader):
        for batch in loader:
            lengths.add(int(batch[0].shape[1]))  # the padded width: the batch's longest
            if len(batch) > 2:
                lengths.update(int(v) for v in batch[2].asnumpy())
    low, high = min(lengths), max(lengths)
    return (high if low == high else None), low, high


class LayerwiseFused(HybridBlock):
    """A trained :class:`~mxlstm.recurrent.RecurrentLayer` (inference only, every row read
    to its end) as one 1-layer fused ``RNN`` op per layer, on the trained layer's own
    Parameter objects.

    ``split_directions``: a bidirectional layer runs as two unidirectional ops, the reverse
    one on ``reverse(x)`` (all rows have all steps, so that is exact). On this CPU's
    oneDNN build the bidirectional op takes 2.6x the time of two unidirectional ones at
    batch 1 (hidden 256, T 8), about the same at batch 128
    (``scripts/inference_op_timings.py``); mx2onnx converts only the bidirectional form.

    Inputs: ``x (N, T, C)`` (or ``(T, N, C)``), states (each ``(L*D, N, H)``) or None.
    Outputs: ``out``, and with ``return_states`` the final states.
    """

    def __init__(self, trained: RecurrentLayer, return_states: bool,
                 split_directions: bool = False) -> None:
        super().__init__(prefix=trained.prefix, params=trained.params)
        self.hidden_size = trained.hidden_size
        self.num_layers = trained.num_layers
        self.directions = trained.directions
        self.layout = trained.layout
        self.mode = trained._table.cells[0].mode  # 'lstm', 'gru', 'rnn_tanh', 'rnn_relu'
        self.num_states = len(trained.state_info())
        self.return_states = return_states
        self.split_directions = split_directions and len(self.directions) == 2
        self.weight_dropout = 0.0  # identity at inference; read by fused.pack_params
        for name in trained._reg_params:  # l0_i2h_weight, ...: shared, not copied
            setattr(self, name, self.params.get(name))

    def _layer(self, F, x, begin: list, index: int, params: dict):
        """One layer on ``x (T, N, C)``: ``(out (T, N, D*H), [final state (D, N, H)])``."""
        groups = [[d] for d in self.directions] if self.split_directions \
            else [list(self.directions)]
        outs, finals = [], [[] for _ in begin]
        for k, dirs in enumerate(groups):
            flat_params = fused_ops.pack_params(F, self, params, [index], dirs)
            part = begin if len(groups) == 1 else \
                [F.slice_axis(s, axis=0, begin=k, end=k + 1) for s in begin]
            seq = F.reverse(x, axis=0) if dirs == ["r"] else x
            out = F.RNN(seq, flat_params, *part, state_size=self.hidden_size, num_layers=1,
                        bidirectional=len(dirs) == 2, mode=self.mode, state_outputs=True,
                        p=0.0)
            outs.append(F.reverse(out[0], axis=0) if dirs == ["r"] else out[0])
            for s in range(self.num_states):
                finals[s].append(out[s + 1])
        layer_out = outs[0] if len(outs) == 1 else F.concat(*outs, dim=2)
        return layer_out, [f[0] if len(f) == 1 else F.concat(*f, dim=0) for f in finals]

    def hybrid_forward(self, F, x, states=None, **params):
        if self.layout == "NTC":
            x = F.swapaxes(x, 0, 1)
        per = len(self.directions)
        if states is None:
            zero = F.expand_dims(zeros_like_state(F, x, self.hidden_size), axis=0)
            zero = F.broadcast_axis(zero, axis=0, size=per)
        finals: list[list] = [[] for _ in range(self.num_states)]
        for index in range(self.num_layers):
            if states is None:
                begin = [zero] + [F.identity(zero) for _ in range(self.num_states - 1)]
            else:
                begin = [F.slice_axis(s, axis=0, begin=index * per, end=(index + 1) * per)
                         for s in states]
            x, layer_finals = self._layer(F, x, begin, index, params)
            for k, f in enumerate(layer_finals):
                finals[k].append(f)
        if self.layout == "NTC":
            x = F.swapaxes(x, 0, 1)
        if not self.return_states:
            return x
        return x, [f[0] if len(f) == 1 else F.concat(*f, dim=0) for f in finals]


class FixedLengthModel(HybridBlock):
    """Inference graph of a trained model without ``valid_length``: dropouts left out
    (identities at inference), the encoder given (default: the trained one).

    ``stateful`` (language models, streaming): inputs ``data``, states; outputs the
    per-step head ``(N, T, K)`` / logits ``(N, T, V)``, then the new states. Otherwise:
    input ``data`` whose rows all have ``length`` valid steps; output pooled ``(N, K)`` (or
    per-step ``(N, T, K)`` for per-step models). The encoder takes ``x`` (and states when
    stateful) and returns ``out`` (and the new states).
    """

    def __init__(self, model: HybridBlock, kind: str, streaming: bool,
                 length: int | None = None, encoder: HybridBlock | None = None) -> None:
        super().__init__()
        self.length = length
        self.stateful = kind == "language_model" or streaming
        self.pooling = None if self.stateful or getattr(model, "per_step", False) \
            else model.pooling
        self.hidden_size = model.encoder.hidden_size
        self.bidirectional = model.encoder.num_directions == 2
        self.embedding = model.embedding
        self.projection = getattr(model, "projection", None)
        self.encoder = encoder if encoder is not None else model.encoder
        self.head = model.decoder if kind == "language_model" else model.head

    def hybrid_forward(self, F, x, *states):
        for stage in (self.embedding, self.projection):
            if stage is not None:
                x = stage(x)
        if self.stateful:
            out, new = self.encoder(x, list(states))
            return (self.head(out), *new)
        out = self.encoder(x)
        if self.pooling is None:
            return self.head(out)
        # mx2onnx checks its graph against onnx's newest opset, where ReduceMean/ReduceMax
        # take no 'axes' attribute: sum / T and a global max pooling convert instead
        if self.pooling == "mean":
            return self.head(F.sum(out, axis=1) / float(self.length))
        if self.pooling == "max":
            pooled = F.Pooling(F.expand_dims(F.swapaxes(out, 1, 2), axis=3), kernel=(1, 1),
                               pool_type="max", global_pool=True, layout="NCHW")
            return self.head(F.reshape(pooled, shape=(0, -1)))
        last = F.squeeze(F.slice_axis(out, axis=1, begin=-1, end=None), axis=1)
        if self.bidirectional:  # reverse direction: its output at step 0 read everything
            first = F.squeeze(F.slice_axis(out, axis=1, begin=0, end=1), axis=1)
            last = F.concat(F.slice_axis(last, axis=1, begin=0, end=self.hidden_size),
                            F.slice_axis(first, axis=1, begin=self.hidden_size, end=None),
                            dim=1)
        return self.head(last)

"""The fused fast path: MXNet's ``RNN`` operator on the layer's own parameters.

The operator takes all weights as one flat vector: every layer's and direction's
``i2h_weight, h2h_weight`` (order ``l0, r0, l1, r1, ...``), then all biases in the same
order — the packing ``gluon.rnn.LSTM`` uses, so the layer's parameters are exactly a
``gluon.rnn.LSTM``'s. The caller (:class:`mxlstm.blocks.recurrent.RecurrentLayer`) has already
checked that this path is exact for the call.
"""

from __future__ import annotations

from mxlstm.blocks._sequence import length_mask, reverse_time, zeros_like_state
from mxlstm.blocks.regularize import drop_weights
from mxlstm.kernels import layer as kernel_layer


def pack_params(F, layer, params: dict, layers, directions):
    """The flat parameter vector for ``layers`` x ``directions`` of ``layer``."""
    weights, biases = [], []
    for index in layers:
        for d in directions:
            key = f"{d}{index}"
            h2h = drop_weights(F, params[f"{key}_h2h_weight"], layer.weight_dropout)
            weights += [F.reshape(params[f"{key}_i2h_weight"], shape=(-1,)),
                        F.reshape(h2h, shape=(-1,))]
            biases += [F.reshape(params[f"{key}_i2h_bias"], shape=(-1,)),
                       F.reshape(params[f"{key}_h2h_bias"], shape=(-1,))]
    return F._internal._rnn_param_concat(*weights, *biases, dim=0)


def _call(F, layer, x, flat, states, num_layers: int, bidirectional: bool):
    out = F.RNN(x, flat, *states, state_size=layer.hidden_size, num_layers=num_layers,
                bidirectional=bidirectional, mode=layer.mode,
                state_outputs=True, p=0.0)
    return out[0], [out[k] for k in range(1, len(states) + 1)]


def _split_call(F, layer, x, params, index: int, states):
    """One bidirectional layer on ``x (T, N, C)`` whose rows all hold ``T`` steps, as two
    unidirectional ops (the reverse one on ``reverse(x)``); states each ``(2, N, H)``."""
    outs, finals = [], [[] for _ in states]
    for k, d in enumerate(layer.directions):
        flat = pack_params(F, layer, params, [index], [d])
        part = [F.slice_axis(s, axis=0, begin=k, end=k + 1) for s in states]
        seq = F.reverse(x, axis=0) if d == "r" else x
        out, fin = _call(F, layer, seq, flat, part, 1, False)
        outs.append(F.reverse(out, axis=0) if d == "r" else out)
        for s, f in enumerate(fin):
            finals[s].append(f)
    return F.concat(*outs, dim=2), [F.concat(*f, dim=0) for f in finals]


def run(layer, F, x, valid_length, states, params):
    """Run ``layer`` on ``x (T, N, C)``; returns ``(out (T, N, D*H), final states)``.

    Final states are ``[]`` when ``valid_length`` is given (they are not exact here),
    except on the mxlstm kernel, which runs whenever it is built (exact final states).
    """
    if kernel_layer.unusable_reason(layer) is None:
        return kernel_layer.run(layer, F, x, valid_length, states, params)
    num_layers, dirs = layer.num_layers, layer.directions
    per_layer = len(dirs)
    if states is None:
        zero = F.expand_dims(zeros_like_state(F, x, layer.hidden_size), axis=0)
        zero = F.broadcast_axis(zero, axis=0, size=num_layers * per_layer)
        states = [zero] + [F.identity(zero) for _ in layer._table.cells[0].state_info()[1:]]
    between = layer.dropout and num_layers > 1
    layerwise = layer.one_op_per_layer or layer.split_directions
    if valid_length is None and not between and not layerwise:
        flat = pack_params(F, layer, params, range(num_layers), dirs)
        return _call(F, layer, x, flat, states, num_layers, per_layer == 2)

    finals: list[list] = [[] for _ in states]
    layer_in = x
    for index in range(num_layers):
        lo = index * per_layer
        if valid_length is None:
            flat = pack_params(F, layer, params, [index], dirs)
            layer_states = [F.slice_axis(s, axis=0, begin=lo, end=lo + per_layer)
                            for s in states]
            if layer.split_directions and per_layer == 2:
                layer_in, fin = _split_call(F, layer, layer_in, params, index, layer_states)
            else:
                layer_in, fin = _call(F, layer, layer_in, flat, layer_states, 1,
                                      per_layer == 2)
            for k, f in enumerate(fin):
                finals[k].append(f)
        else:
            outs = []
            for di, d in enumerate(dirs):
                flat = pack_params(F, layer, params, [index], [d])
                dir_states = [F.slice_axis(s, axis=0, begin=lo + di, end=lo + di + 1)
                              for s in states]
                seq = layer_in if d == "l" else reverse_time(F, layer_in, valid_length)
                out, _ = _call(F, layer, seq, flat, dir_states, 1, False)
                outs.append(out if d == "l" else reverse_time(F, out, valid_length))
            layer_in = outs[0] if len(outs) == 1 else F.concat(*outs, dim=2)
        if layer.dropout and index < num_layers - 1:
            layer_in = F.Dropout(layer_in, p=layer.dropout)
    if valid_length is not None:
        mask = F.expand_dims(length_mask(F, x, valid_length), axis=2)
        return F.broadcast_mul(layer_in, mask), []
    return layer_in, [F.concat(*f, dim=0) for f in finals]

"""The step equations of :mod:`mxlstm.cells`, one time step at a time, keeping every
intermediate (gates, candidate, cell state) that the fused kernel hides.

Each ``*_step`` takes the cell (for its options), its parameters, the projected input
``x_proj (N, G*H)`` of the step and the states, and returns ``(parts, h, states)`` where
``parts`` maps the names of :data:`PARTS` to ``(N, H)`` NDArrays. The input and recurrent
projections and the gate split are the cell's own public methods, so the parameter layout
cannot drift from the cells'.
"""

from __future__ import annotations

import mxnet as mx

nd = mx.nd

# what a trace keeps per cell type, in order; GATES are the sigmoid gates among them
PARTS = {
    "lstm": ("i", "f", "o", "g", "c", "h"),
    "gru": ("r", "z", "n", "h"),
    "rnn": ("a", "h"),
}
GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
PART_NAMES = {
    "i": "input gate", "f": "forget gate", "o": "output gate", "g": "candidate",
    "c": "cell state", "h": "hidden state", "r": "reset gate", "z": "update gate",
    "n": "candidate", "a": "pre-activation",
}


def _sigmoid(x):
    return nd.Activation(x, act_type="sigmoid")


def _tanh(x):
    return nd.Activation(x, act_type="tanh")


def _layer_norm(a, groups: int, gamma, beta, eps: float):
    """Layer norm of ``a (N, groups*H)`` within each group of ``H`` features."""
    grouped = a.reshape((0, groups, -1))
    centred = nd.broadcast_sub(grouped, grouped.mean(axis=2, keepdims=True))
    scale = nd.rsqrt(nd.square(centred).mean(axis=2, keepdims=True) + eps)
    normed = nd.broadcast_mul(centred, scale).reshape((0, -1))
    return nd.broadcast_add(nd.broadcast_mul(normed, gamma), beta)


def lstm_step(cell, p: dict, x_proj, states: list):
    """LSTM: ``i, f, o`` gates, candidate ``g``, cell ``c`` and output ``h``."""
    h, c = states
    a = x_proj + cell.recurrent_projection(nd, h, p)
    if cell.layer_norm:
        a = _layer_norm(a, 4, p["ln_gamma"], p["ln_beta"], cell.layer_norm_eps)
    a_i, a_f, a_g, a_o = cell.gates(nd, a)
    if cell.peephole:
        a_i = a_i + nd.broadcast_mul(c, p["peep_i"])
        a_f = a_f + nd.broadcast_mul(c, p["peep_f"])
    i, f, g = _sigmoid(a_i), _sigmoid(a_f), _tanh(a_g)
    c_new = f * c + i * g
    if cell.cell_clip:
        c_new = nd.clip(c_new, -cell.cell_clip, cell.cell_clip)
    if cell.peephole:
        a_o = a_o + nd.broadcast_mul(c_new, p["peep_o"])
    o = _sigmoid(a_o)
    c_out = c_new
    if cell.layer_norm:
        c_out = _layer_norm(c_new, 1, p["ln_c_gamma"], p["ln_c_beta"], cell.layer_norm_eps)
    h_new = o * _tanh(c_out)
    if cell.projection_size:
        h_new = nd.FullyConnected(h_new, p["h2r_weight"], no_bias=True,
                                  num_hidden=cell.projection_size)
    if cell.hidden_clip:
        h_new = nd.clip(h_new, -cell.hidden_clip, cell.hidden_clip)
    return {"i": i, "f": f, "o": o, "g": g, "c": c_new}, h_new, [h_new, c_new]


def gru_step(cell, p: dict, x_proj, states: list):
    """GRU (MXNet's equations): reset ``r``, update ``z``, candidate ``n``, state ``h``."""
    h = states[0]
    i_r, i_z, i_n = cell.gates(nd, x_proj)
    h_r, h_z, h_n = cell.gates(nd, cell.recurrent_projection(nd, h, p))
    r = _sigmoid(i_r + h_r)
    z = _sigmoid(i_z + h_z)
    n = _tanh(i_n + r * h_n)
    h_new = (1 - z) * n + z * h
    return {"r": r, "z": z, "n": n}, h_new, [h_new]


def rnn_step(cell, p: dict, x_proj, states: list):
    """Elman RNN: pre-activation ``a`` and state ``h = act(a)``."""
    a = x_proj + cell.recurrent_projection(nd, states[0], p)
    h_new = nd.Activation(a, act_type=cell.activation)
    return {"a": a}, h_new, [h_new]


STEPS = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}


def run_direction(cell_type: str, cell, p: dict, seq, mask, begin: list,
                  zoneout: float = 0.0, probe=None):
    """Run one (layer, direction) over ``seq (T, N, C)`` in its own time order.

    ``mask (T, N)`` (or None) keeps states past each length and zeroes outputs there, as
    the layer's cells path does; ``zoneout`` is applied at its evaluation value. ``probe``
    ``(T, N, H)`` (zeros, with a gradient attached) is added to ``h_t`` where it leaves the
    step, so that its gradient is ``d loss / d h_t``. Returns ``(parts, final)``: parts
    as ``(T, N, H)`` NDArrays (``h`` included), final the last states.
    """
    step = STEPS[cell_type]
    x_proj = cell.project_input(nd, seq, p)  # (T, N, G*H), one product for all steps
    states = list(begin)
    kept: dict[str, list] = {name: [] for name in PARTS[cell_type]}
    for t in range(seq.shape[0]):
        parts, h, new = step(cell, p, x_proj[t], states)
        if zoneout:
            new = [(1 - zoneout) * n + zoneout * o for n, o in zip(new, states)]
            h = new[0]
        if probe is not None:
            h = h + probe[t]
            new = [h] + new[1:]
        if mask is not None:
            m = mask[t].reshape((-1, 1))
            new = [nd.where(nd.broadcast_like(m, n), n, o) for n, o in zip(new, states)]
            parts = {k: nd.broadcast_mul(v, m) for k, v in parts.items()}
            h = nd.broadcast_mul(h, m)
        parts["h"] = h
        for name in kept:
            kept[name].append(parts[name])
        states = new
    return {name: nd.stack(*values, axis=0) for name, values in kept.items()}, states

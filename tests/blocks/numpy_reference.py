"""Float64 numpy references of the cell equations, written from the papers, not the code.

Weights use the fused layout: ``W (G*H, C)``, ``U (G*H, R)``, biases ``(G*H,)``.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def layer_norm(a, gamma, beta, groups, eps=1e-5):
    n = a.shape[0]
    g = a.reshape(n, groups, -1)
    g = (g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + eps)
    return g.reshape(n, -1) * gamma + beta


def lstm_step(x, h, c, p, peephole=False, layer_norm_=False, cell_clip=None,
              hidden_clip=None, projection=False):
    a = x @ p["i2h_weight"].T + p["i2h_bias"] + h @ p["h2h_weight"].T + p["h2h_bias"]
    if layer_norm_:
        a = layer_norm(a, p["ln_gamma"], p["ln_beta"], 4)
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    if peephole:
        a_i = a_i + p["peep_i"] * c
        a_f = a_f + p["peep_f"] * c
    c_new = sigmoid(a_f) * c + sigmoid(a_i) * np.tanh(a_g)
    if cell_clip:
        c_new = np.clip(c_new, -cell_clip, cell_clip)
    if peephole:
        a_o = a_o + p["peep_o"] * c_new
    c_out = layer_norm(c_new, p["ln_c_gamma"], p["ln_c_beta"], 1) if layer_norm_ else c_new
    h_new = sigmoid(a_o) * np.tanh(c_out)
    if projection:
        h_new = h_new @ p["h2r_weight"].T
    if hidden_clip:
        h_new = np.clip(h_new, -hidden_clip, hidden_clip)
    return h_new, [h_new, c_new]


def gru_step(x, h, p):
    gi = x @ p["i2h_weight"].T + p["i2h_bias"]
    gh = h @ p["h2h_weight"].T + p["h2h_bias"]
    i_r, i_z, i_n = np.split(gi, 3, axis=1)
    h_r, h_z, h_n = np.split(gh, 3, axis=1)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    h_new = (1 - z) * n + z * h
    return h_new, [h_new]


def rnn_step(x, h, p, activation="tanh"):
    a = x @ p["i2h_weight"].T + p["i2h_bias"] + h @ p["h2h_weight"].T + p["h2h_bias"]
    h_new = np.tanh(a) if activation == "tanh" else np.maximum(a, 0)
    return h_new, [h_new]


def run_sequence(step, x, states, **options):
    """Run ``step`` over ``x (N, T, C)``; returns ``(out (N, T, H), final states)``."""
    outs = []
    for t in range(x.shape[1]):
        out, states = step(x[:, t], *states, **options)
        outs.append(out)
    return np.stack(outs, axis=1), states

"""Each cell against a float64 numpy reference, plus finite-difference gradient checks."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import numpy_reference as ref
import pytest
from mxnet import autograd

from mxlstm import ConfigError, GRUCell, LSTMCell, RNNCell

LSTM_OPTIONS = [
    {},
    {"peephole": True},
    {"layer_norm": True},
    {"cell_clip": 0.25, "hidden_clip": 0.125},
    {"projection_size": 3},
    {"peephole": True, "layer_norm": True, "projection_size": 4},
]


def randomize(cell, rng, dtype="float64", scale=0.5):
    """Give every parameter random values (so peepholes, gammas etc. matter)."""
    values = {}
    for name, param in cell._reg_params.items():
        value = rng.normal(scale=scale, size=param.shape)
        if name in ("ln_gamma", "ln_c_gamma"):
            value += 1.0
        param.set_data(mx.nd.array(value, dtype=dtype))
        values[name] = value
    return values


def make(cell_cls, hidden, inputs, dtype="float64", **options):
    cell = cell_cls(hidden, input_size=inputs, **options)
    cell.initialize()
    cell.cast(dtype)
    return cell


def run_cell(cell, x, states):
    """Run ``cell`` one step at a time over ``x (N, T, C)`` (numpy); returns numpy out, states."""
    nd_states = [mx.nd.array(s, dtype=x.dtype) for s in states]
    outs = []
    for t in range(x.shape[1]):
        out, nd_states = cell(mx.nd.array(x[:, t], dtype=x.dtype), nd_states)
        outs.append(out.asnumpy())
    return np.stack(outs, axis=1), [s.asnumpy() for s in nd_states]


def reference_step(cell_cls, options):
    if cell_cls is LSTMCell:
        return lambda x, h, c, p: ref.lstm_step(
            x, h, c, p, peephole=options.get("peephole", False),
            layer_norm_=options.get("layer_norm", False), cell_clip=options.get("cell_clip"),
            hidden_clip=options.get("hidden_clip"),
            projection=bool(options.get("projection_size")))
    if cell_cls is GRUCell:
        return ref.gru_step
    return lambda x, h, p: ref.rnn_step(x, h, p, options.get("activation", "tanh"))


CASES = [(LSTMCell, o) for o in LSTM_OPTIONS] + [
    (GRUCell, {}), (RNNCell, {}), (RNNCell, {"activation": "relu"})]


@pytest.mark.parametrize("cell_cls,options", CASES)
@pytest.mark.parametrize("n,c,h,t", [(1, 1, 1, 3), (4, 3, 5, 6), (7, 10, 8, 4)])
def test_cell_matches_numpy_float64(cell_cls, options, n, c, h, t):
    rng = np.random.RandomState(n * 100 + c * 10 + h)
    cell = make(cell_cls, h, c, **options)
    params = randomize(cell, rng)
    x = rng.normal(size=(n, t, c))
    states = [rng.normal(scale=0.5, size=info["shape"]) for info in cell.state_info(n)]
    out, final = run_cell(cell, x, states)
    step = reference_step(cell_cls, options)
    want_out, want_final = ref.run_sequence(step, x, states, p=params)
    np.testing.assert_allclose(out, want_out, rtol=0, atol=1e-12)
    for got, want in zip(final, want_final):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell_cls,options", CASES)
def test_cell_float32_close_to_float64_reference(cell_cls, options):
    rng = np.random.RandomState(3)
    cell = make(cell_cls, 16, 8, dtype="float32", **options)
    params = randomize(cell, rng, dtype="float32")
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
    x = rng.normal(size=(5, 10, 8)).astype(np.float32)
    states = [np.zeros(info["shape"], np.float32) for info in cell.state_info(5)]
    out, _ = run_cell(cell, x, states)
    want, _ = ref.run_sequence(reference_step(cell_cls, options), x.astype(np.float64),
                               [s.astype(np.float64) for s in states], p=params)
    np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)


def finite_difference_check(cell, x, states, rng, eps=1e-6):
    """Compare autograd gradients of ``sum(R * out)`` with central differences (float64)."""
    xs = mx.nd.array(x, dtype="float64")
    nd_states = [mx.nd.array(s, dtype="float64") for s in states]
    weights = mx.nd.array(rng.normal(size=(x.shape[0], cell.output_size)), dtype="float64")

    def objective():
        out, new = cell(xs, nd_states)
        total = (out * weights).sum()
        if len(new) > 1:  # LSTM: the cell state is an output too
            total = total + (new[1] * 0.5).sum()
        return total

    params = list(cell._reg_params.values())
    targets = [xs] + nd_states
    for arr in targets:
        arr.attach_grad()
    with autograd.record():
        loss = objective()
    loss.backward()
    checked = 0
    for arr, grad in [(a, a.grad.asnumpy()) for a in targets] + [
            (p.data(), p.grad().asnumpy()) for p in params]:
        flat = arr.reshape((-1,))
        for i in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
            old = flat[i].asscalar()
            flat[i] = old + eps
            up = objective().asscalar()
            flat[i] = old - eps
            down = objective().asscalar()
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grad.reshape(-1)[i]) < 1e-6 * max(1.0, abs(numeric)), \
                (numeric, grad.reshape(-1)[i])
            checked += 1
    assert checked > 10


@pytest.mark.parametrize("cell_cls,options", [
    (LSTMCell, {}), (LSTMCell, {"peephole": True}), (LSTMCell, {"layer_norm": True}),
    (LSTMCell, {"projection_size": 3}), (GRUCell, {}), (RNNCell, {})])
def test_cell_gradients_match_finite_differences(cell_cls, options):
    rng = np.random.RandomState(7)
    cell = make(cell_cls, 4, 3, **options)
    randomize(cell, rng)
    x = rng.normal(size=(2, 3))
    states = [rng.normal(scale=0.5, size=info["shape"]) for info in cell.state_info(2)]
    finite_difference_check(cell, x, states, rng)


def test_hybridized_cell_equals_imperative():
    rng = np.random.RandomState(1)
    cell = make(LSTMCell, 6, 5, dtype="float32", peephole=True, layer_norm=True)
    randomize(cell, rng, dtype="float32")
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    states = [np.zeros((3, 6), np.float32)] * 2
    out_imp, _ = run_cell(cell, x, states)
    cell.hybridize()
    out_hyb, _ = run_cell(cell, x, states)
    np.testing.assert_allclose(out_hyb, out_imp, rtol=0, atol=1e-6)


def test_forget_bias_initialised_to_one_and_configurable():
    cell = LSTMCell(4, input_size=3)
    cell.initialize()
    bias = cell.i2h_bias.data().asnumpy()
    np.testing.assert_array_equal(bias[4:8], 1.0)
    np.testing.assert_array_equal(np.delete(bias, range(4, 8)), 0.0)
    cell = LSTMCell(4, input_size=3, forget_bias=2.5, layer_norm=True)
    cell.initialize()
    np.testing.assert_array_equal(cell.ln_beta.data().asnumpy()[4:8], 2.5)


def test_chrono_initialisation_spreads_forget_biases():
    mx.random.seed(0)
    cell = LSTMCell(200, input_size=3, chrono_init=500)
    cell.initialize()
    bias = cell.i2h_bias.data().asnumpy()
    forget, inputs = bias[200:400], bias[0:200]
    assert forget.min() >= 0.0 and forget.max() <= np.log(499) + 1e-6
    assert forget.max() > np.log(100), "time scales must reach far"
    np.testing.assert_allclose(inputs, -forget)
    np.testing.assert_array_equal(bias[400:], 0.0)


def test_cell_clip_bounds_the_cell_state():
    cell = make(LSTMCell, 5, 2, cell_clip=0.125)
    randomize(cell, np.random.RandomState(0), scale=3.0)
    _, (h, c) = cell(mx.nd.ones((4, 2), dtype="float64") * 10, cell.begin_state(4, dtype="float64"))
    assert np.abs(c.asnumpy()).max() <= 0.125


def test_bad_cell_options_raise_config_error():
    with pytest.raises(ConfigError, match="hidden_size"):
        LSTMCell(0)
    with pytest.raises(ConfigError, match="cell_clip"):
        LSTMCell(4, cell_clip=-1.0)
    with pytest.raises(ConfigError, match="activation"):
        RNNCell(4, activation="sigmoid")

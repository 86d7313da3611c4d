"""The recurrent layer: fused == cells == MXNet's own layer, hybridized == imperative,
padding never changes the answer, and the numpy reference over whole sequences."""

from __future__ import annotations

import logging

import mxnet as mx
import numpy as np
import numpy_reference as ref
import pytest
from mxnet import autograd, gluon

from mxlstm import GRU, LSTM, RNN, ConfigError
from mxlstm.kernels import layer as kernel_layer

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
MXNET_LAYERS = {"lstm": gluon.rnn.LSTM, "gru": gluon.rnn.GRU,
                "rnn": lambda *a, **k: gluon.rnn.RNN(*a, activation="tanh", **k)}
STEPS = {"lstm": ref.lstm_step, "gru": ref.gru_step, "rnn": ref.rnn_step}


def build(kind, hidden=6, layers=1, bidirectional=False, x=None, **kwargs):
    layer = LAYERS[kind](hidden, layers, bidirectional=bidirectional, **kwargs)
    layer.initialize(mx.init.Uniform(0.5))
    if x is not None:
        layer(x)  # resolve deferred shapes
    return layer


def copy_params(src, dst):
    s, d = src._collect_params_with_prefix(), dst._collect_params_with_prefix()
    assert set(s) == set(d)
    for key in s:
        d[key].set_data(s[key].data())


def grads(layer):
    return {k: p.grad().asnumpy() for k, p in layer._collect_params_with_prefix().items()}


def forward_backward(layer, x, *args):
    x = x.copy()
    x.attach_grad()
    with autograd.record():
        result = layer(x, *args)
        out, states = result if isinstance(result, tuple) else (result, [])
        loss = (out * out).sum() + sum((s * 0.3).sum() for s in states)
    loss.backward()
    return out.asnumpy(), [s.asnumpy() for s in states], grads(layer), x.grad.asnumpy()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_fused_equals_cells_forward_states_and_gradients(kind, layers, bidirectional):
    x = mx.nd.random.normal(shape=(3, 7, 5))
    fused = build(kind, 6, layers, bidirectional, x, fused=True, return_states=True)
    cells = build(kind, 6, layers, bidirectional, x, fused=False, return_states=True)
    copy_params(fused, cells)
    out_f, st_f, g_f, gx_f = forward_backward(fused, x)
    out_c, st_c, g_c, gx_c = forward_backward(cells, x)
    np.testing.assert_allclose(out_f, out_c, atol=1e-6)
    for a, b in zip(st_f, st_c):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # float32 gradients: the tolerance scales with their size (RNN ones reach ~10)
    np.testing.assert_allclose(gx_f, gx_c, atol=1e-5 * max(1.0, np.abs(gx_c).max()))
    for key in g_f:
        np.testing.assert_allclose(g_f[key], g_c[key],
                                   atol=1e-5 * max(1.0, np.abs(g_c[key]).max()), err_msg=key)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_mxnet_fused_layer_and_loads_its_checkpoint(kind, bidirectional, tmp_path):
    x = mx.nd.random.normal(shape=(4, 6, 3))
    theirs = MXNET_LAYERS[kind](5, 2, bidirectional=bidirectional, layout="NTC")
    theirs.initialize(mx.init.Uniform(0.5))
    theirs(x)
    theirs.save_parameters(str(tmp_path / "mx.params"))
    for fused in (True, False):
        ours = LAYERS[kind](5, 2, bidirectional=bidirectional, fused=fused)
        ours.load_parameters(str(tmp_path / "mx.params"))
        np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), atol=1e-6)
    ours.save_parameters(str(tmp_path / "ours.params"))
    theirs.load_parameters(str(tmp_path / "ours.params"))


@pytest.mark.parametrize("fused", [True, False])
def test_hybridized_equals_imperative(fused):
    x = mx.nd.random.normal(shape=(2, 5, 4))
    layer = build("lstm", 6, 2, True, x, fused=fused, return_states=True)
    out, states = layer(x)
    layer.hybridize()
    out_h, states_h = layer(x)
    np.testing.assert_allclose(out_h.asnumpy(), out.asnumpy(), atol=1e-6)
    for a, b in zip(states, states_h):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-6)


def numpy_layer(kind, layer, x, length):
    """float64 reference for one unpadded sequence ``x (T, C)``: outputs and final states."""
    params = {k: p.data().asnumpy().astype(np.float64)
              for k, p in layer._reg_params.items()}
    seq = x[:length][None].astype(np.float64)
    finals = []
    for index in range(layer.num_layers):
        outs = []
        for d in layer.directions:
            p = {k[len(f"{d}{index}_"):]: v for k, v in params.items()
                 if k.startswith(f"{d}{index}_")}
            zeros = [np.zeros((1, layer.hidden_size))] * (2 if kind == "lstm" else 1)
            inp = seq if d == "l" else seq[:, ::-1]
            out, final = ref.run_sequence(STEPS[kind], inp, zeros, p=p)
            outs.append(out if d == "l" else out[:, ::-1])
            finals.append(final)
        seq = np.concatenate(outs, axis=2)
    return seq[0], [np.concatenate([f[k] for f in finals]) for k in range(len(finals[0]))]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_padding_never_changes_the_answer(kind, layers, bidirectional):
    """Padded batch with valid_length == each sequence alone, one hybridized graph for all T,
    on both paths (fused without final states, cells with them)."""
    rng = np.random.RandomState(0)
    cells = build(kind, 5, layers, bidirectional, mx.nd.zeros((1, 2, 3)),
                  fused=False, return_states=True)
    fused = build(kind, 5, layers, bidirectional, mx.nd.zeros((1, 2, 3)), fused=True)
    copy_params(cells, fused)
    cells.hybridize()
    fused.hybridize()
    for total in (4, 9, 13):
        lengths = np.array([total, 1, total // 2, total - 1])
        x = rng.normal(size=(4, total, 3)).astype(np.float32)
        x[np.arange(total)[None, :] >= lengths[:, None]] = 99.0  # padding must not leak
        out, (h, *rest) = cells(mx.nd.array(x), mx.nd.array(lengths))
        out_fused = fused(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
        out = out.asnumpy()
        np.testing.assert_allclose(out_fused, out, atol=1e-6)
        for n, length in enumerate(lengths):
            want_out, want_states = numpy_layer(kind, cells, x[n], length)
            np.testing.assert_allclose(out[n, :length], want_out, atol=1e-5)
            assert not out[n, length:].any(), "outputs past the end must be zero"
            for got, want in zip([h] + rest, want_states):
                np.testing.assert_allclose(got.asnumpy()[:, n], want, atol=1e-5)
            alone = cells(mx.nd.array(x[n:n + 1, :length]), mx.nd.array([length]))[0]
            np.testing.assert_allclose(alone.asnumpy()[0], out[n, :length], atol=1e-6)


def test_padding_under_autograd_gives_the_same_gradients_as_alone():
    x = mx.nd.random.normal(shape=(2, 6, 3))
    layer = build("lstm", 4, 1, True, x, fused="auto")
    layer.hybridize()
    lengths = mx.nd.array([6, 3])
    _, _, g_batch, gx = forward_backward(layer, x, lengths)
    _, _, g_first, _ = forward_backward(layer, x[0:1], lengths[0:1])
    _, _, g_second, gx_second = forward_backward(layer, x[1:2, :3], lengths[1:2])
    for key in g_batch:
        np.testing.assert_allclose(g_batch[key], g_first[key] + g_second[key], atol=1e-5)
    np.testing.assert_allclose(gx[1, :3], gx_second[0], atol=1e-6)
    assert not gx[1, 3:].any()


def test_tnc_layout_and_given_begin_states():
    x = mx.nd.random.normal(shape=(3, 5, 4))
    ntc = build("lstm", 6, 2, False, x, return_states=True)
    tnc = LSTM(6, 2, layout="TNC", return_states=True)
    tnc.initialize()
    tnc(x.swapaxes(0, 1))
    copy_params(ntc, tnc)
    begin = [mx.nd.random.normal(shape=info["shape"]) for info in ntc.state_info(3)]
    out, states = ntc(x, None, begin)
    out_t, states_t = tnc(x.swapaxes(0, 1), None, begin)
    np.testing.assert_allclose(out_t.swapaxes(0, 1).asnumpy(), out.asnumpy(), atol=1e-6)
    # carrying the states on equals one long run
    first, mid = ntc(x[:, :2], None, begin)
    second, end = ntc(x[:, 2:], None, mid)
    np.testing.assert_allclose(second.asnumpy(), out[:, 2:].asnumpy(), atol=1e-6)
    np.testing.assert_allclose(end[1].asnumpy(), states[1].asnumpy(), atol=1e-6)


def test_path_choice_is_honest_and_logged(caplog):
    x = mx.nd.ones((1, 2, 3))
    peephole = build("lstm", 4, x=None, peephole=True)
    with caplog.at_level(logging.INFO, logger="mxlstm.blocks.recurrent"):
        peephole(x)
    assert "cells path" in caplog.text and "peephole" in caplog.text
    assert not peephole.uses_fused(False)
    with pytest.raises(ConfigError, match="not exact"):
        build("lstm", 4, x=x, peephole=True, fused=True)
    plain = build("lstm", 4, return_states=True)
    assert plain.uses_fused(False)
    kernel_built = kernel_layer.unusable_reason(plain) is None
    assert plain.uses_fused(True) == kernel_built, \
        "final states of padded batches need the cells path or the mxlstm kernel"


def test_static_shape_on_the_cells_path_is_refused_not_silently_wrong():
    """MXNet 1.9.1's foreach after a FullyConnected gives wrong numbers under
    static_shape=True; the layer refuses instead of returning them."""
    x = mx.nd.random.normal(shape=(2, 5, 3))
    cells = build("lstm", 4, 1, False, x, fused=False)
    cells.hybridize(static_alloc=True, static_shape=True)
    with pytest.raises((ConfigError, ValueError), match="static_shape"):
        cells(x)
    fused = build("lstm", 4, 1, False, x, fused=True)
    want = fused(x).asnumpy()
    fused.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(fused(x).asnumpy(), want, atol=1e-6)


def test_weight_drop_composes_with_the_fused_path():
    x = mx.nd.random.normal(shape=(2, 5, 3))
    fused = build("lstm", 4, 1, False, x, fused=True, weight_dropout=0.5)
    cells = build("lstm", 4, 1, False, x, fused=False, weight_dropout=0.5)
    copy_params(fused, cells)
    with autograd.train_mode():
        mx.random.seed(3)
        a = fused(x).asnumpy()
        mx.random.seed(3)
        b = cells(x).asnumpy()
        mx.random.seed(4)
        c = cells(x).asnumpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.abs(a - c).max() > 1e-3, "a different mask must change the output"
    np.testing.assert_allclose(fused(x).asnumpy(), cells(x).asnumpy(), atol=1e-6)


@pytest.mark.parametrize("option", ["recurrent_dropout", "zoneout"])
def test_in_loop_regularisers_train_stochastic_and_run_the_cells(option):
    x = mx.nd.random.normal(shape=(2, 6, 3))
    plain = build("lstm", 4, 1, False, x)
    reg = build("lstm", 4, 1, False, x, **{option: 0.3})
    copy_params(plain, reg)
    assert not reg.uses_fused(False)
    with autograd.train_mode():
        assert np.abs(reg(x).asnumpy() - plain(x).asnumpy()).max() > 1e-3
    if option == "recurrent_dropout":  # evaluation: the mask's expectation is 1
        np.testing.assert_allclose(reg(x).asnumpy(), plain(x).asnumpy(), atol=1e-6)


def test_runs_on_every_listed_context():
    """The MXNet way: parameters on each context, inputs moved there (cpu(1) stands in
    for a second device in tests)."""
    contexts = [mx.cpu(0), mx.cpu(1)]
    layer = LSTM(4, input_size=3)
    layer.initialize(mx.init.Uniform(0.5), ctx=contexts)
    x = mx.nd.random.normal(shape=(2, 5, 3))
    outs = [layer(x.as_in_context(ctx)) for ctx in contexts]
    assert outs[1].context == mx.cpu(1)
    np.testing.assert_allclose(outs[0].asnumpy(), outs[1].asnumpy(), atol=0)
    assert layer.begin_state(2, ctx=mx.cpu(1))[0].context == mx.cpu(1)


def test_bad_layer_options_raise_config_error():
    with pytest.raises(ConfigError, match="layout"):
        LSTM(4, layout="NCT")
    with pytest.raises(ConfigError, match="dropout"):
        LSTM(4, dropout=1.5)
    with pytest.raises(ConfigError, match="unknown cell type"):
        from mxlstm.blocks.recurrent import RecurrentLayer
        RecurrentLayer("lsmt", 4)

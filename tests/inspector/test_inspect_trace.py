"""trace(): the gate-level re-run of a model's encoder equals its normal (fused) forward,
its parts obey the cell equations, and padding is masked."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.models import LanguageModel, SequenceModel
from mxlstm.errors import ConfigError
from mxlstm.inspect import model_outputs, saturation, trace


def _model(cell, **kwargs):
    mx.random.seed(1)
    model = SequenceModel(3, hidden_size=5, cell_type=cell, head_units=(4,), **kwargs)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model


def _data(n=4, steps=7, channels=3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, steps, channels).astype("float32"), np.array([7, 3, 5, 1][:n])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("options", [
    {"num_layers": 2, "bidirectional": True, "pooling": "last"},
    {"num_layers": 2, "pooling": "mean"},
    {"per_step": True, "bidirectional": True},
])
def test_outputs_from_trace_equal_the_fused_forward(cell, options):
    model = _model(cell, **options)
    assert model.encoder.uses_fused(True)  # the reference really is the fused kernel
    x, lengths = _data()
    expected = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    tr = trace(model, x, lengths)
    got = model_outputs(model, tr)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    keys = ["l0", "r0", "l1", "r1"] if options.get("bidirectional") else ["l0", "l1"]
    assert tr.keys == keys[:len(tr.keys)] and len(tr.keys) == options.get("num_layers", 1) \
        * (2 if options.get("bidirectional") else 1)


@pytest.mark.parametrize("options", [{"peephole": True}, {"layer_norm": True},
                                     {"cell_clip": 0.5, "projection_size": 3},
                                     {"zoneout": 0.3}])
def test_cells_path_options_trace_exactly(options):
    model = _model("lstm", bidirectional=True, **options)
    x, lengths = _data()
    expected = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    np.testing.assert_allclose(model_outputs(model, trace(model, x, lengths)), expected,
                               atol=1e-5, rtol=0)


def test_language_model_with_begin_states_and_final_states():
    mx.random.seed(2)
    lm = LanguageModel(20, 6, 5, 2, "gru")
    lm.initialize(mx.init.Xavier())
    lm.hybridize(static_alloc=True)
    rng = np.random.RandomState(3)
    ids = rng.randint(0, 20, (3, 9))
    states = [mx.nd.array(rng.randn(2, 3, 5).astype("float32"))]
    logits, finals = lm(mx.nd.array(ids), states)
    tr = trace(lm, ids, states=states)
    np.testing.assert_allclose(model_outputs(lm, tr), logits.asnumpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(tr.final_states[0], finals[0].asnumpy(), atol=1e-6)
    # carrying the final states into the next window equals one long window
    long = rng.randint(0, 20, (3, 12))
    first = trace(lm, long[:, :5])
    second = trace(lm, long[:, 5:], states=first.final_states)
    whole = trace(lm, long)
    np.testing.assert_allclose(second.parts["l1"]["h"], whole.parts["l1"]["h"][:, 5:],
                               atol=1e-6)


def test_lstm_parts_obey_the_cell_equations_and_padding_is_zero():
    model = _model("lstm", bidirectional=True)
    x, lengths = _data()
    tr = trace(model, x, lengths)
    for key in ("l0", "r0"):
        p = tr.parts[key]
        assert set(p) == {"i", "f", "o", "g", "c", "h"}
        assert p["c"].shape == (4, 7, 5)
        np.testing.assert_allclose(p["h"], p["o"] * np.tanh(p["c"]), atol=1e-6)
        for gate in "ifo":
            valid = p[gate][tr.mask()]
            assert valid.min() > 0 and valid.max() < 1
        for name, value in p.items():
            assert not value[~tr.mask()].any(), (key, name)
    f, i, g, c = (tr.parts["l0"][k] for k in "figc")
    # c_t = f_t c_{t-1} + i_t g_t in reading order, from zero
    np.testing.assert_allclose(c[:, 1:4], f[:, 1:4] * c[:, 0:3] + (i * g)[:, 1:4], atol=1e-6)
    # the reverse direction starts at each sequence's last valid step from zero
    n = 1  # length 3
    rf, ri, rg, rc = (tr.parts["r0"][k][n] for k in "figc")
    np.testing.assert_allclose(rc[2], ri[2] * rg[2], atol=1e-6)
    np.testing.assert_allclose(rc[1], rf[1] * rc[2] + ri[1] * rg[1], atol=1e-6)


def test_gru_and_rnn_parts():
    x, lengths = _data()
    gru = trace(_model("gru"), x, lengths)
    p = gru.parts["l0"]
    assert set(p) == {"r", "z", "n", "h"}
    h_prev = np.concatenate([np.zeros_like(p["h"][:, :1]), p["h"][:, :-1]], axis=1)
    np.testing.assert_allclose(p["h"][0], ((1 - p["z"]) * p["n"] + p["z"] * h_prev)[0],
                               atol=1e-6)
    rnn = trace(_model("rnn"), x, lengths)
    np.testing.assert_allclose(rnn.parts["l0"]["h"], np.tanh(rnn.parts["l0"]["a"]), atol=1e-6)
    assert saturation(rnn) == {"l0": {}}


def test_saturation_counts_valid_steps_only():
    model = _model("lstm")
    x, lengths = _data()
    tr = trace(model, x, lengths)
    tr.parts["l0"]["f"][:] = 0.5
    tr.parts["l0"]["f"][0, :, 0] = 0.95   # unit 0 right-saturated on example 0 (7 steps)
    tr.parts["l0"]["f"][1, :, 1] = 0.05   # unit 1 left-saturated on example 1 (3 valid)
    sat = saturation(tr)["l0"]["f"]
    total = lengths.sum()
    assert sat["right"][0] == pytest.approx(7 / total)
    assert sat["left"][1] == pytest.approx(3 / total)
    assert sat["left"][2:].sum() == 0 and sat["right"][1:].sum() == 0


def test_bad_lengths_are_refused():
    model = _model("rnn")
    x, _ = _data()
    with pytest.raises(ConfigError, match="valid_length"):
        trace(model, x, [7, 8, 1, 1])

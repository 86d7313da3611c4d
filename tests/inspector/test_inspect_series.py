"""trace() and gradient_flow() on the series model (LSTM-FCN): its recurrent branch is
traced after the model's own input stage (per-series z-norm, window averaging), and its
outputs recomputed from the trace, the convolutional branch and the head equal the
model's normal (fused) forward."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.series_model import SeriesModel
from mxlstm.ensemble import EnsembleModel
from mxlstm.errors import ConfigError
from mxlstm.inspect import gradient_flow, model_outputs, trace


def _model(cell="lstm", outputs=3, **kw):
    mx.random.seed(4)
    model = SeriesModel(outputs, hidden_size=5, cell_type=cell, bidirectional=True, **kw)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model


def _data(channels=2, seed=0):
    rng = np.random.RandomState(seed)
    lengths = np.array([11, 7, 4, 9])
    x = (3.0 + 2.0 * rng.normal(size=(4, 11, channels))).astype(np.float32)
    for k, n in enumerate(lengths):
        x[k, n:] = 0.0
    return x, lengths


def _stir_batch_norms(model, seed=1):
    """Running statistics away from (0, 1), as after training, so the BN layers matter."""
    rng = np.random.RandomState(seed)
    for name, param in model.collect_params().items():
        if name.endswith("running_mean"):
            param.set_data(mx.nd.array(rng.normal(size=param.shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2.0, size=param.shape)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("options", [
    {"series_norm": True, "conv_filters": (4, 6, 4)},
    {"series_norm": True, "conv_filters": (4, 6, 4), "stride": 3, "pooling": "mean"},
    {"conv_filters": (5,), "stride": 2, "target": (10.0, 2.0), "num_layers": 2},
    {"series_norm": True, "keep_level": True, "conv_filters": (4,), "stride": 2},
    {"series_norm": True},  # no conv branch
    # the convolutional branch at its own resolution: every step, or finer windows
    {"series_norm": True, "conv_filters": (4, 6), "stride": 3, "conv_stride": 1},
    {"conv_filters": (4,), "stride": 4, "conv_stride": 2, "keep_level": False},
    # windows as mean, max and min; a second (multi-scale) conv branch on every step
    {"series_norm": True, "conv_filters": (4,), "stride": 3, "fine_stride": 1,
     "window_stats": "meanmaxmin"},
])
def test_outputs_from_trace_equal_the_fused_forward(cell, options):
    model = _model(cell, **options)
    x, lengths = _data(channels=1 if options.get("series_norm") else 2)
    expected = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()  # shapes now known
    _stir_batch_norms(model)
    expected = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    assert model.encoder.uses_fused(True)  # the reference really is the fused kernel
    tr = trace(model, x, lengths)
    stride = options.get("stride", 1)
    assert tr.stride == stride
    np.testing.assert_array_equal(tr.valid_length, -(-lengths // stride))
    assert tr.outputs.shape[1] == -(-11 // stride) and tr.inputs.shape[1] == tr.outputs.shape[1]
    np.testing.assert_allclose(model_outputs(model, tr), expected, atol=1e-5, rtol=0)
    if "conv_filters" in options:
        conv_stride = options.get("conv_stride", stride)
        assert tr.side["conv_input"].shape[1] == -(-11 // conv_stride)
        np.testing.assert_array_equal(tr.side["conv_valid_length"], -(-lengths // conv_stride))
    if "fine_stride" in options:
        assert tr.side["conv_fine_input"].shape[1] == 11 and tr.inputs.shape[2] == 3
    layers = options.get("num_layers", 1)
    assert tr.keys == ["l0", "r0", "l1", "r1"][:2 * layers]
    for parts in tr.parts.values():  # masked past each averaged sequence's end
        for value in parts.values():
            assert not value[~tr.mask()].any()


def test_the_trace_reads_the_normalised_series():
    """The recurrent branch reads z-normalised series: a per-series affine change of the
    input (positive scale) leaves every gate unchanged."""
    model = _model(series_norm=True, conv_filters=(4,))
    x, lengths = _data(channels=1)
    tr = trace(model, x, lengths)
    valid = tr.mask()
    z = tr.inputs[..., 0][valid]
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-4)
    moved = np.where(np.arange(11)[None, :, None] < lengths[:, None, None],
                     x * np.array([0.5, 3.0, 7.0, 1.0])[:, None, None] - 4.0, 0.0)
    again = trace(model, moved.astype(np.float32), lengths)
    np.testing.assert_allclose(again.parts["l0"]["c"], tr.parts["l0"]["c"], atol=1e-4)


@pytest.mark.parametrize("conv_stride", [None, 1])
def test_gradient_flow_goes_through_the_recurrent_branch_only(conv_stride):
    model = _model(series_norm=True, conv_filters=(4, 6), stride=2, conv_stride=conv_stride)
    x, lengths = _data(channels=1)
    y = np.array([0, 2, 1, 2])
    logits = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    flow = gradient_flow(model, x, y, lengths)
    # the loss is the model's own cross-entropy on its normal forward
    shifted = logits - logits.max(axis=1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(4), y]
    assert flow.loss == pytest.approx(float(nll.mean()), rel=1e-5)
    steps = -(-lengths // 2)
    assert flow.inputs.shape == (6,) and set(flow.hidden) == {"l0", "r0"}
    np.testing.assert_array_equal(flow.valid_length, steps)
    assert (flow.hidden["l0"][:steps.max()] > 0).all() and (flow.inputs > 0).all()
    # cut the head from the recurrent features: the conv branch still reads x, yet no
    # gradient is left, so d loss / d x_t is the recurrent branch's alone
    dense = model.head[-1]
    weight = dense.weight.data().asnumpy()
    weight[:, :2 * 5] = 0.0
    dense.weight.set_data(mx.nd.array(weight))
    cut = gradient_flow(model, x, y, lengths)
    assert cut.loss > 0 and not cut.inputs.any()
    assert not any(v.any() for v in cut.hidden.values())


def test_regression_targets_and_kinds():
    model = _model(outputs=1, conv_filters=(4,), target=(10.0, 2.0))
    x, lengths = _data()
    y = np.array([9.0, 11.0, 10.5, 8.0], np.float32)
    pred = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    for kind in (None, "regression"):
        flow = gradient_flow(model, x, y, lengths, kind=kind)
        mse = float(((pred - y[:, None]) ** 2).mean()) / 2.0 ** 2  # as ScaledRegression
        assert flow.loss == pytest.approx(mse, rel=1e-5)
    with pytest.raises(ConfigError, match="unknown task kind 'classification'; choose one "
                                          "of sequence_classification"):
        gradient_flow(model, x, y, lengths, kind="classification")


def test_an_ensemble_is_refused_in_one_line_naming_its_members():
    members = [_model(conv_filters=(4,)) for _ in range(2)]
    ensemble = EnsembleModel(members, classify=True)
    x, lengths = _data()
    with pytest.raises(ConfigError, match="members/seed-S"):
        trace(ensemble, x, lengths)

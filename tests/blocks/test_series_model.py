"""SeriesModel: per-series z-normalisation, the LSTM-FCN branch, step averaging."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.series_blocks import ConvBranch, SeriesZNorm, step_mask
from mxlstm.blocks.series_model import SeriesModel, average_steps, stride_for, window_steps
from mxlstm.errors import ConfigError


def _model(**kw):
    mx.random.seed(0)
    model = SeriesModel(3, hidden_size=4, bidirectional=True, **kw)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model


@pytest.mark.parametrize("options", [
    {"series_norm": True, "conv_filters": (4, 8, 4)},
    {"series_norm": True, "conv_filters": (4, 8, 4), "stride": 3},
    {"conv_filters": (5,), "stride": 2, "target": (10.0, 2.0)},
    {"series_norm": True, "keep_level": True, "conv_filters": (4,), "stride": 2},
    {"series_norm": True, "conv_filters": (4, 8, 4), "stride": 3, "conv_stride": 1},
    {"conv_filters": (4,), "stride": 4, "conv_stride": 2},
    {"series_norm": True, "conv_filters": (4, 8), "stride": 3, "window_stats": "meanmaxmin"},
    {"conv_filters": (4,), "stride": 4, "conv_stride": 2, "window_stats": "meanmaxmin"},
    {"conv_filters": (4,), "stride": 3, "conv_stride": 1, "window_stats": "meanmaxmin"},
    {"series_norm": True, "conv_filters": (4, 8), "stride": 4, "fine_stride": 1},
    {"conv_filters": (4,), "stride": 4, "fine_stride": 2, "window_stats": "meanmaxmin"},
])
def test_padding_never_changes_the_answer(options):
    model = _model(**options)
    rng = np.random.RandomState(0)
    lengths = np.array([10, 7, 5], np.float32)
    x = rng.normal(size=(3, 10, 2)).astype(np.float32)
    for k, n in enumerate(lengths.astype(int)):
        x[k, n:] = 0.0
    batch = model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    for k, n in enumerate(lengths.astype(int)):
        alone = model(mx.nd.array(x[k:k + 1, :n]), mx.nd.array(lengths[k:k + 1])).asnumpy()
        np.testing.assert_allclose(alone[0], batch[k], atol=1e-6)


def test_znorm_by_hand_and_affine_invariance():
    x = mx.nd.array([[[1.0], [3.0], [0.0]]])  # valid 2 steps: mean 2, std 1
    out = SeriesZNorm()(x, mx.nd.array([2.0])).asnumpy()[0, :, 0]
    np.testing.assert_allclose(out, [-1.0, 1.0, 0.0], atol=1e-6)
    y = np.random.RandomState(1).normal(size=(2, 6, 3)).astype(np.float32)
    lengths = mx.nd.array([6.0, 6.0])
    a = SeriesZNorm()(mx.nd.array(y), lengths).asnumpy()
    b = SeriesZNorm()(mx.nd.array(y * 3.0 + 7.0), lengths).asnumpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_average_steps_by_hand():
    x = mx.nd.array([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    out, length = average_steps(mx.nd, x, mx.nd.array([5.0]), 2)
    np.testing.assert_allclose(out.asnumpy()[0, :, 0], [1.5, 3.5, 2.5])  # (5 + 0) / 2
    assert length.asnumpy().tolist() == [3.0]
    assert stride_for(1460, 512) == 3 and stride_for(427, 512) == 1 and stride_for(9, 0) == 1


def test_target_scaling_and_reload_after_inference(tmp_path):
    model = _model(conv_filters=(4,), target=(100.0, 10.0))
    x, lengths = mx.nd.ones((2, 6, 1)), mx.nd.array([6.0, 4.0])
    before = model(x, lengths).asnumpy()  # inference reorders conv weights (oneDNN)
    model.save_parameters(str(tmp_path / "p.params"))
    other = _model(conv_filters=(4,), target=(0.0, 1.0))
    other(x, lengths)
    other.load_parameters(str(tmp_path / "p.params"))  # MXNet alone fails here
    np.testing.assert_allclose(other(x, lengths).asnumpy(), before, rtol=1e-6)
    with mx.autograd.record():  # and it still trains
        loss = other(x, lengths).sum()
    loss.backward()
    assert np.abs(other.head[0].weight.grad().asnumpy()).sum() > 0


@pytest.mark.parametrize("options", [
    {"series_norm": True, "conv_filters": (4, 8, 4), "stride": 3, "pooling": "last"},
    {"series_norm": True, "keep_level": True, "conv_filters": (4,), "pooling": "mean"},
    {"conv_filters": (5, 3), "stride": 2, "pooling": "max", "target": (10.0, 2.0)},
])
def test_fixed_length_variant_equals_the_model_read_to_the_end(options):
    model = _model(**options)
    x = mx.nd.array(np.random.RandomState(2).normal(size=(4, 11, 2)))
    reference = model(x, mx.nd.full((4,), 11)).asnumpy()
    fixed = model.variant(fixed_length=11)  # the same Parameter objects, no valid_length
    fixed.hybridize(static_alloc=True)
    assert set(fixed.collect_params()) == set(model.collect_params())
    np.testing.assert_allclose(fixed(x).asnumpy(), reference, atol=1e-6)


def test_streaming_is_refused_with_what_reads_the_whole_series():
    reason = SeriesModel(3, 4, series_norm=True, conv_filters=(4,), stride=2).streaming_refusal()
    for words in ("per-series normalisation", "convolutional branch", "windows of 2 steps",
                  "valid_length"):
        assert words in reason
    assert "\n" not in reason


def test_conv_branch_reads_its_own_resolution(tmp_path):
    """conv_stride=1: the convolutional branch sees every step while the recurrent branch
    reads windows of 3; the branch features are those of the two inputs computed apart."""
    from mxlstm.blocks.models import pool

    model = _model(conv_filters=(4,), stride=3, conv_stride=1)
    rng = np.random.RandomState(1)
    x = mx.nd.array(rng.normal(size=(2, 9, 2)))
    lengths = mx.nd.array([9, 6])
    averaged, steps = average_steps(mx.nd, x, lengths, 3)
    recurrent = pool(mx.nd, model.encoder(averaged, steps), steps, "last", True, 4)
    features = mx.nd.concat(recurrent, model.conv(x, lengths), dim=1)
    np.testing.assert_allclose(model(x, lengths).asnumpy(), model.head(features).asnumpy(),
                               atol=1e-6)
    coarse = _model(conv_filters=(4,), stride=3)
    model.save_parameters(str(tmp_path / "w.params"))
    coarse.load_parameters(str(tmp_path / "w.params"))  # the same weights
    assert np.abs(coarse(x, lengths).asnumpy() - model(x, lengths).asnumpy()).max() > 1e-4


def _window_reference(x: np.ndarray, n: int, stride: int) -> np.ndarray:
    """numpy: mean (sum / stride), max and min of each window of one series' ``n`` valid
    steps, ``(ceil(n / stride), 3C)``."""
    rows = []
    for start in range(0, n, stride):
        seg = x[start:min(start + stride, n)]
        rows.append(np.concatenate([seg.sum(0) / stride, seg.max(0), seg.min(0)]))
    return np.array(rows, np.float32)


def test_window_stats_against_numpy_with_negative_series_and_padding():
    rng = np.random.RandomState(3)
    x = (rng.normal(size=(3, 11, 2)) - 5.0).astype(np.float32)  # all < 0: 0 never a max
    lengths = np.array([11, 7, 2], np.float32)
    for k, n in enumerate(lengths.astype(int)):
        x[k, n:] = 0.0
    out, steps = window_steps(mx.nd, mx.nd.array(x), mx.nd.array(lengths), 3, "meanmaxmin")
    out = out.asnumpy()
    assert out.shape == (3, 4, 6) and steps.asnumpy().tolist() == [4.0, 3.0, 1.0]
    for k, n in enumerate(lengths.astype(int)):
        ref = _window_reference(x[k], n, 3)
        np.testing.assert_allclose(out[k, :len(ref)], ref, rtol=1e-6)
        assert not out[k, len(ref):].any()  # zero past the new length
    same, _ = window_steps(mx.nd, mx.nd.array(x), mx.nd.array(lengths), 1, "meanmaxmin")
    np.testing.assert_array_equal(same.asnumpy(), x)  # one step a window: the series
    with pytest.raises(ConfigError, match="window_stats"):
        SeriesModel(3, 4, window_stats="median")


def test_window_stats_hybridized_equals_imperative_and_trains():
    options = {"series_norm": True, "conv_filters": (4,), "stride": 3,
               "window_stats": "meanmaxmin"}
    hybrid = _model(**options)
    mx.random.seed(0)
    plain = SeriesModel(3, hidden_size=4, bidirectional=True, prefix=hybrid.prefix,
                        params=hybrid.collect_params(), **options)
    x = mx.nd.array(np.random.RandomState(4).normal(size=(3, 10, 2)))
    lengths = mx.nd.array([10, 8, 4])
    np.testing.assert_allclose(hybrid(x, lengths).asnumpy(), plain(x, lengths).asnumpy(),
                               atol=1e-6)
    with mx.autograd.record():
        loss = hybrid(x, lengths).sum()
    loss.backward()
    weight = hybrid.encoder.collect_params()
    grads = [p.grad().asnumpy() for name, p in weight.items() if "i2h_weight" in name]
    assert grads and grads[0].shape[1] == 6  # 3C inputs, every one with a gradient
    assert (np.abs(grads[0]).sum(axis=0) > 0).all()


def test_fine_branch_adds_the_features_of_a_second_branch_at_its_resolution():
    """fine_stride=1: the head reads [recurrent, coarse conv on windows of 3, fine conv on
    every step], the fine branch with its own weights."""
    from mxlstm.blocks.models import pool

    model = _model(conv_filters=(4,), stride=3, fine_stride=1)
    assert [s for _, s in model.conv_branches()] == [3, 1]
    rng = np.random.RandomState(5)
    x = mx.nd.array(rng.normal(size=(2, 9, 2)))
    lengths = mx.nd.array([9, 5])
    averaged, steps = average_steps(mx.nd, x, lengths, 3)
    recurrent = pool(mx.nd, model.encoder(averaged, steps), steps, "last", True, 4)
    features = mx.nd.concat(recurrent, model.conv(averaged, steps),
                            model.conv_fine(x, lengths), dim=1)
    np.testing.assert_allclose(model(x, lengths).asnumpy(), model.head(features).asnumpy(),
                               atol=1e-6)
    assert model.head[0].weight.shape[1] == 8 + 4 + 4
    fine = set(model.conv_fine.collect_params()) - set(model.conv.collect_params())
    assert fine == set(model.conv_fine.collect_params())  # weights of its own
    assert "second convolutional branch" in model.streaming_refusal()
    assert SeriesModel(3, 4, fine_stride=1).conv_fine is None  # no filters: no branch


class _BroadcastMaskBranch(ConvBranch):
    """ConvBranch as first written: the mask multiplied by broadcasting (the reference)."""

    def hybrid_forward(self, F, x, valid_length):
        mask = F.swapaxes(step_mask(F, x, valid_length), 1, 2)
        h = F.broadcast_mul(F.swapaxes(x, 1, 2), mask)
        for k in range(0, len(self.layers), 3):
            conv, norm, act = self.layers[k], self.layers[k + 1], self.layers[k + 2]
            out = F.slice_like(conv(h), h, axes=(2,))
            h = F.broadcast_mul(act(norm(out)), mask)
        return F.broadcast_div(F.sum(h, axis=2), F.reshape(valid_length, shape=(-1, 1)))


@pytest.mark.parametrize("hybridize", [False, True])
def test_conv_branch_masking_gives_the_broadcast_reference_and_its_gradients(hybridize):
    rng = np.random.RandomState(3)
    x = mx.nd.array(rng.normal(size=(4, 11, 2)))
    lengths = mx.nd.array([11, 6, 1, 9])
    weights = mx.nd.array(rng.normal(size=(4, 5)))  # d loss / d output
    fast, reference = ConvBranch((5, 7, 5)), _BroadcastMaskBranch((5, 7, 5))
    for block in (fast, reference):
        block.initialize(mx.init.Xavier())
        block(x, lengths)
    for a, b in zip(fast.collect_params().values(), reference.collect_params().values()):
        b.set_data(a.data())
    if hybridize:
        fast.hybridize()
    results = []
    for block in (fast, reference):
        x.attach_grad()
        with mx.autograd.record():
            out = block(x, lengths)
            loss = (out * weights).sum()
        loss.backward()
        grads = [p.grad().asnumpy() for p in block.collect_params().values()
                 if p.grad_req != "null"]
        results.append((out.asnumpy(), x.grad.asnumpy(), grads))
    (out_a, dx_a, g_a), (out_b, dx_b, g_b) = results
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(dx_a, dx_b)
    assert dx_a[0].any() and not dx_a[1, 6:].any() and not dx_a[2, 1:].any()  # padding: 0
    assert len(g_a) == len(g_b) == 9
    for a, b in zip(g_a, g_b):
        assert a.any()
        np.testing.assert_array_equal(a, b)

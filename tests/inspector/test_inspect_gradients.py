"""gradient_flow(): equal to a float64 numpy backpropagation through time on a tiny RNN,
and the loss kinds of every task."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.models import LanguageModel, SequenceModel
from mxlstm.inspect import gradient_flow


def _tiny_rnn():
    mx.random.seed(4)
    model = SequenceModel(1, hidden_size=3, cell_type="rnn")
    model.initialize(mx.init.Uniform(0.8))
    model.hybridize(static_alloc=True)
    return model


def _numpy_bptt(model, x, y, lengths):
    """float64 forward and backward of h_t = tanh(W x_t + b + U h_{t-1} + b'),
    pred = V h_{L-1} + c, loss = mean (pred - y)^2; returns |dL/dh_t|, |dL/dx_t|, loss."""
    enc = model.encoder
    w, u = (getattr(enc, f"l0_{k}").data().asnumpy().astype(np.float64)
            for k in ("i2h_weight", "h2h_weight"))
    b = sum(getattr(enc, f"l0_{k}").data().asnumpy().astype(np.float64)
            for k in ("i2h_bias", "h2h_bias"))
    dense = model.head[0]
    v, c = dense.weight.data().asnumpy().astype(np.float64), dense.bias.data().asnumpy()
    n, steps, _ = x.shape
    hs = np.zeros((n, steps, 3))
    preds = np.zeros(n)
    for k in range(n):
        h = np.zeros(3)
        for t in range(lengths[k]):
            h = np.tanh(w @ x[k, t] + u @ h + b)
            hs[k, t] = h
        preds[k] = (v @ hs[k, lengths[k] - 1] + c)[0]
    loss = np.mean((preds - y) ** 2)
    dh, dx = np.zeros_like(hs), np.zeros(x.shape)
    for k in range(n):
        grad = 2 * (preds[k] - y[k]) / n * v[0]
        for t in range(lengths[k] - 1, -1, -1):
            dh[k, t] = grad
            da = grad * (1 - hs[k, t] ** 2)
            dx[k, t] = w.T @ da
            grad = u.T @ da
    norm = lambda g: np.sqrt((g ** 2).sum(axis=(0, 2)))  # noqa: E731
    return norm(dh), norm(dx), loss


def test_gradient_norms_equal_a_float64_numpy_bptt():
    model = _tiny_rnn()
    rng = np.random.RandomState(0)
    x = rng.randn(3, 9, 2)
    y = rng.randn(3)
    lengths = np.array([9, 4, 6])
    flow = gradient_flow(model, x.astype("float32"), y.astype("float32"), lengths)
    ref_h, ref_x, ref_loss = _numpy_bptt(model, x.astype("float32").astype(np.float64), y,
                                         lengths)
    assert flow.loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(flow.hidden["l0"], ref_h, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(flow.inputs, ref_x, rtol=1e-4, atol=1e-9)
    assert ref_h[0] > 0 and ref_h[-1] > 0  # the last step has only the longest sequence
    assert flow.ratio("l0") == pytest.approx(ref_h[0] / ref_h[3], rel=1e-4)  # 4 steps: k=1


def test_every_loss_kind_backpropagates():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 5, 3).astype("float32")
    lengths = np.array([5, 3])
    for per_step, y in ((False, np.array([0, 2])), (True, rng.randint(0, 3, (2, 5)))):
        model = SequenceModel(3, hidden_size=4, cell_type="lstm", bidirectional=True,
                              per_step=per_step)
        model.initialize(mx.init.Xavier())
        flow = gradient_flow(model, x, y, lengths)
        assert set(flow.hidden) == {"l0", "r0"} and flow.loss > 0
        assert (flow.hidden["l0"] > 0).all() and (flow.inputs[:3] > 0).all()
    lm = LanguageModel(11, 4, 4, 2, "rnn")
    lm.initialize(mx.init.Xavier())
    ids = rng.randint(0, 11, (2, 6))
    flow = gradient_flow(lm, ids, rng.randint(0, 11, (2, 6)))
    assert set(flow.hidden) == {"l0", "l1"} and flow.inputs.shape == (6,)
    assert np.isfinite(list(flow.ratios().values())).all()


@pytest.mark.parametrize("lengths", [[6, 6], [6, 4]])
def test_both_directions_are_in_time_order(lengths):
    """Pooling 'last' reads the forward state at each sequence's last step and the reverse
    state at step 0: there ``d loss / d h_t`` is the head's gradient alone."""
    from mxlstm.blocks.models import pool

    mx.random.seed(0)
    model = SequenceModel(3, hidden_size=4, cell_type="lstm", bidirectional=True)
    model.initialize(mx.init.Xavier())
    rng = np.random.RandomState(0)
    x, y, lengths = rng.randn(2, 6, 3).astype("float32"), np.array([0, 2]), np.array(lengths)
    flow = gradient_flow(model, x, y, lengths)
    out = model.encoder(mx.nd.array(x), mx.nd.array(lengths))
    features = pool(mx.nd, out, mx.nd.array(lengths), "last", True, 4)
    features.attach_grad()
    with mx.autograd.record():
        loss = (-mx.nd.pick(mx.nd.log_softmax(model.head(features)), mx.nd.array(y))).mean()
    loss.backward()
    direct = features.grad.asnumpy()
    assert flow.hidden["r0"][0] == pytest.approx(np.linalg.norm(direct[:, 4:]), rel=1e-5)
    if lengths.min() == 6:
        assert flow.hidden["l0"][5] == pytest.approx(np.linalg.norm(direct[:, :4]), rel=1e-5)
    # ratio() of the reverse direction is taken in its reading order: its first steps are
    # the last ones every sequence has, its last step is time 0
    m = lengths.min()
    assert flow.ratio("r0") == pytest.approx(flow.hidden["r0"][m - 1] / flow.hidden["r0"][0],
                                             rel=1e-6)
    assert flow.ratio("r0") < 0.5 and flow.ratio("l0") < 0.5  # both fade into the past

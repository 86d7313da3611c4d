"""The kernel's fused softmax negative log-likelihood: equal to a float64 numpy reference
(loss and gradient) and to MXNet's log_softmax + pick, hybridized == imperative, labels
read as ``pick`` reads them, NaN kept, and the fallback when the kernel is off."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from mxlstm import kernels
from mxlstm.kernels.loss import fused_nll_usable, softmax_nll

REASON = kernels.status()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=f"mxlstm kernel: {REASON}")


def reference(x: np.ndarray, y: np.ndarray, g: np.ndarray):
    """float64: loss = logsumexp(x) - x[label], d/dx = g (softmax(x) - onehot(label))."""
    x = x.astype(np.float64)
    k = x.shape[-1]
    label = np.clip(y.astype(np.int64), 0, k - 1)  # pick: truncate, then clip
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    loss = lse - np.take_along_axis(x, label[..., None], axis=-1)[..., 0]
    grad = np.exp(x - lse[..., None])
    np.put_along_axis(grad, label[..., None], np.take_along_axis(grad, label[..., None], -1) - 1,
                      axis=-1)
    return loss, grad * g[..., None]


def run(fn, x, y, g):
    x = mx.nd.array(x)
    x.attach_grad()
    with autograd.record():
        loss = fn(x, mx.nd.array(y))
    loss.backward(mx.nd.array(g))
    return loss.asnumpy(), x.grad.asnumpy()


def mxnet_nll(x, y):
    return -mx.nd.pick(mx.nd.log_softmax(x, axis=-1), y, axis=-1)


CASES = [((7,), 5, 1.0), ((3, 4), 11, 3.0), ((2, 3), 1, 1.0), ((4, 9), 10000, 2.0),
         ((6,), 33, 40.0)]  # logits up to +-160: the row maximum keeps exp in range


@needs_kernel
@pytest.mark.parametrize("rows,k,scale", CASES)
def test_equals_float64_reference_and_mxnet(rows, k, scale):
    rng = np.random.RandomState(k)
    x = rng.normal(scale=scale, size=rows + (k,)).astype(np.float32)
    y = rng.randint(0, k, size=rows).astype(np.float32)
    g = rng.normal(size=rows).astype(np.float32)
    loss, grad = run(lambda a, b: softmax_nll(mx.nd, a, b), x, y, g)
    want_loss, want_grad = reference(x, y, g)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-5 * max(1.0, scale))
    np.testing.assert_allclose(grad, want_grad, atol=2e-6)
    mx_loss, mx_grad = run(mxnet_nll, x, y, g)
    np.testing.assert_allclose(loss, mx_loss, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    np.testing.assert_allclose(grad, mx_grad, atol=1e-5)


@needs_kernel
def test_labels_are_read_as_pick_reads_them():
    """Out-of-range labels clip to [0, K), fractional ones truncate, int labels work."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([-3, 4, 9, 2.7, 1], np.float32)
    g = np.ones(5, np.float32)
    got = run(lambda a, b: softmax_nll(mx.nd, a, b), x, y, g)
    want = run(mxnet_nll, x, y, g)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)  # MXNet's float rounding
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    exact = reference(x, y, g)
    np.testing.assert_allclose(got[0], exact[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], exact[1], atol=1e-6)
    ints = softmax_nll(mx.nd, mx.nd.array(x), mx.nd.array([0, 1, 2, 3, 1], dtype=np.int32))
    np.testing.assert_allclose(ints.asnumpy(), reference(x, np.array([0, 1, 2, 3, 1]), g)[0],
                               rtol=1e-6)


class Loss(gluon.HybridBlock):
    def hybrid_forward(self, F, x, y):
        return softmax_nll(F, x, y)


@needs_kernel
def test_hybridized_equals_imperative():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(3, 5, 12)).astype(np.float32)
    y = rng.randint(0, 12, size=(3, 5)).astype(np.int32)  # a symbol's labels are cast
    g = rng.normal(size=(3, 5)).astype(np.float32)
    block = Loss()
    want = run(block, x, y, g)
    block.hybridize()
    got = run(block, x, y, g)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@needs_kernel
def test_nan_or_inf_logit_gives_nan_loss_in_its_row_only():
    """NaN and +inf make the row's loss NaN; -inf (a masked class) is probability 0, as in
    log_softmax + pick."""
    x = np.zeros((4, 6), np.float32)
    x[0, 2], x[2, 5], x[3, 0] = np.nan, np.inf, -np.inf
    loss = softmax_nll(mx.nd, mx.nd.array(x), mx.nd.array([1, 1, 1, 1])).asnumpy()
    assert np.isnan(loss[0]) and np.isnan(loss[2])
    assert loss[1] == pytest.approx(np.log(6), rel=1e-6)
    want = mxnet_nll(mx.nd.array(x), mx.nd.array([1, 1, 1, 1])).asnumpy()
    assert loss[3] == pytest.approx(np.log(5), rel=1e-6)
    assert loss[3] == pytest.approx(want[3], rel=1e-5)


def test_kernel_off_falls_back_to_log_softmax_and_pick(monkeypatch):
    monkeypatch.setenv("MXLSTM_KERNEL", "0")
    x = mx.nd.array(np.random.RandomState(3).normal(size=(4, 7)))
    assert not fused_nll_usable(mx.nd, x)
    y = mx.nd.array([0, 6, 3, 2])
    np.testing.assert_allclose(softmax_nll(mx.nd, x, y).asnumpy(),
                               mxnet_nll(x, y).asnumpy(), rtol=1e-6)
    assert not fused_nll_usable(mx.nd, x.astype(np.float64))

"""Each regulariser does what it says in training and nothing at evaluation."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from mxlstm import ConfigError
from mxlstm.blocks.regularize import EmbeddingDropout, LockedDropout, drop_weights, zoneout


@pytest.mark.parametrize("layout,time_axis", [("NTC", 1), ("TNC", 0)])
def test_locked_dropout_uses_one_mask_for_all_time_steps(layout, time_axis):
    block = LockedDropout(0.5, layout=layout)
    x = mx.nd.ones((4, 6, 8))
    with autograd.train_mode():
        y = block(x).asnumpy()
    first = np.take(y, 0, axis=time_axis)
    for t in range(x.shape[time_axis]):
        np.testing.assert_array_equal(np.take(y, t, axis=time_axis), first)
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(block(x).asnumpy(), x.asnumpy())


def test_embedding_dropout_drops_whole_words():
    block = EmbeddingDropout(50, 8, p=0.5)
    block.initialize(mx.init.One())
    ids = mx.nd.array([[1, 2, 1, 3], [3, 3, 2, 1]])
    mx.random.seed(1)
    with autograd.train_mode():
        out = block(ids).asnumpy()
    assert out.shape == (2, 4, 8)
    rows = {}
    for word, vec in zip(ids.asnumpy().ravel(), out.reshape(-1, 8)):
        assert np.all(vec == vec[0]) and vec[0] in (0.0, 2.0)
        rows.setdefault(word, vec[0])
        assert rows[word] == vec[0], "a word is dropped everywhere or nowhere"
    np.testing.assert_array_equal(block(ids).asnumpy(), np.ones((2, 4, 8)))


def test_zoneout_keeps_old_values_with_probability_p():
    new, old = mx.nd.ones((200, 100)), mx.nd.zeros((200, 100))
    with autograd.train_mode():
        mixed = zoneout(mx.nd, new, old, 0.3).asnumpy()
    assert set(np.unique(mixed)) == {0.0, 1.0}
    assert abs((mixed == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(zoneout(mx.nd, new, old, 0.3).asnumpy(), 0.7, rtol=1e-6)


def test_drop_weights_is_dropconnect_only_in_training():
    w = mx.nd.ones((30, 30))
    with autograd.train_mode():
        dropped = drop_weights(mx.nd, w, 0.4).asnumpy()
    assert abs((dropped == 0).mean() - 0.4) < 0.05
    np.testing.assert_allclose(dropped[dropped > 0], 1 / 0.6, rtol=1e-6)
    np.testing.assert_array_equal(drop_weights(mx.nd, w, 0.4).asnumpy(), w.asnumpy())


def test_rates_outside_zero_one_are_config_errors():
    with pytest.raises(ConfigError, match="locked dropout"):
        LockedDropout(1.0)
    with pytest.raises(ConfigError, match="embedding dropout"):
        EmbeddingDropout(5, 2, p=-0.1)

import math

import numpy as np
import pytest

from mxlstm.data.batchify import pad_batchify
from mxlstm.data.synthetic import (
    ADDING_BASELINE_MSE,
    adding_problem,
    as_dataset,
    copy_memory,
    copy_memory_baseline,
)
from mxlstm.errors import ConfigError


def test_adding_shapes_markers_and_targets():
    x, y = adding_problem(500, 31, seed=3)
    assert x.shape == (500, 31, 2) and x.dtype == np.float32
    assert y.shape == (500,) and y.dtype == np.float32
    values, marker = x[..., 0], x[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(marker)) == {0.0, 1.0}
    assert (marker.sum(axis=1) == 2).all()
    half = 31 // 2
    assert (marker[:, :half].sum(axis=1) == 1).all()
    assert (marker[:, half:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y, (values * marker).sum(axis=1), rtol=1e-6)


def test_adding_baseline_mse_is_one_sixth():
    _, y = adding_problem(50_000, 10, seed=0)
    mse = float(np.mean((y - 1.0) ** 2))
    assert abs(mse - 0.1667) < 0.005
    assert abs(ADDING_BASELINE_MSE - 1 / 6) < 1e-12


def test_adding_deterministic():
    a = adding_problem(20, 8, seed=7)
    b = adding_problem(20, 8, seed=7)
    c = adding_problem(20, 8, seed=8)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_copy_memory_layout():
    s, d, k = 5, 7, 6
    x, y = copy_memory(40, s, d, num_symbols=k, seed=1)
    assert x.shape == y.shape == (40, 2 * s + d)
    assert x.dtype == y.dtype == np.int32
    assert x[:, :s].min() >= 1 and x[:, :s].max() <= k
    assert (x[:, s : s + d - 1] == 0).all()
    assert (x[:, s + d - 1] == k + 1).all()
    assert (x[:, s + d :] == 0).all()
    assert (y[:, : s + d] == 0).all()
    np.testing.assert_array_equal(y[:, s + d :], x[:, :s])


def test_copy_memory_deterministic_and_seed_is_keyword():
    a = copy_memory(10, 4, 3, seed=2)
    b = copy_memory(10, 4, 3, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], copy_memory(10, 4, 3, seed=9)[0])
    with pytest.raises(TypeError):
        copy_memory(10, 4, 3, 8, 2)


def test_copy_memory_baseline_matches_memoryless_predictor():
    s, d, k = 10, 20, 8
    _, y = copy_memory(200, s, d, num_symbols=k, seed=0)
    probs = np.zeros(y.shape + (k + 2,))
    probs[:, : s + d, 0] = 1.0
    probs[:, s + d :, 1 : k + 1] = 1.0 / k
    picked = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    ce = float(-np.log(picked).mean())
    assert ce == pytest.approx(copy_memory_baseline(s, d, k))
    assert ce == pytest.approx(s * math.log(k) / (2 * s + d))


@pytest.mark.parametrize(
    "call",
    [
        lambda: adding_problem(0, 10, seed=0),
        lambda: adding_problem(5, 1, seed=0),
        lambda: adding_problem(5, 10, seed=-1),
        lambda: copy_memory(5, 3, 0, seed=0),
        lambda: copy_memory(5, 3, 2, num_symbols=1, seed=0),
    ],
)
def test_bad_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()


def test_as_dataset_batches():
    x, y = adding_problem(6, 9, seed=0)
    ds = as_dataset(x, y)
    data, label, length = pad_batchify(label_dtype="float32")([ds[i] for i in range(4)])
    assert data.shape == (4, 9, 2)
    np.testing.assert_allclose(label.asnumpy(), y[:4])
    np.testing.assert_array_equal(length.asnumpy(), [9, 9, 9, 9])

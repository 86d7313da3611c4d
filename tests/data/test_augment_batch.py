"""Batch-level image augmentation: equal to the per-image transforms with the parameters
drawn from the batch stream, the same with and without worker processes, and used by
the training loader only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
from mxnet import gluon

from mxlstm.data.augment import AugmentedDataset, Jitter, PixelShift, SmallRotation
from mxlstm.data.augment_base import Compose, _shift
from mxlstm.data.augment_batch import (
    BATCH_STREAM,
    BatchAugmentingBatchify,
    TaggedView,
    augment_batch,
    batch_stream,
    batch_transforms,
    unaugmented,
)
from mxlstm.data.batchify import pad_batchify
from mxlstm.data.batching import make_loader
from mxlstm.data.image_ops import rotate, rotate_images, shift_images
from mxlstm.errors import DataError


def images(n: int, shape=(7, 5), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32) * 16


def rotate_reference(img: np.ndarray, degrees: float) -> np.ndarray:
    """Pixel by pixel, float64: the bilinear value at the rotated source position, zero
    outside the image."""
    h, w = img.shape
    cy, cx, t = (h - 1) / 2, (w - 1) / 2, np.radians(degrees)
    out = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            sy = np.cos(t) * (r - cy) - np.sin(t) * (c - cx) + cy
            sx = np.sin(t) * (r - cy) + np.cos(t) * (c - cx) + cx
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            for y, x, weight in ((y0, x0, (1 - sy + y0) * (1 - sx + x0)),
                                 (y0, x0 + 1, (1 - sy + y0) * (sx - x0)),
                                 (y0 + 1, x0, (sy - y0) * (1 - sx + x0)),
                                 (y0 + 1, x0 + 1, (sy - y0) * (sx - x0))):
                if 0 <= y < h and 0 <= x < w:
                    out[r, c] += weight * img[y, x]
    return out


@pytest.mark.parametrize("shape", [(8, 8), (7, 5), (1, 4)])
def test_rotate_images_equals_a_pixel_by_pixel_reference(shape):
    x = images(9, shape)
    angles = np.random.default_rng(1).uniform(-180, 180, 9)
    angles[0] = 0.0
    expected = np.stack([rotate_reference(img, a) for img, a in zip(x, angles)])
    got = rotate_images(x, angles)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[3], rotate(x[3], angles[3]))


def test_shift_images_equals_two_shifts_of_each_image():
    x = images(12)
    rng = np.random.default_rng(2)
    dy, dx = rng.integers(-8, 9, 12), rng.integers(-6, 7, 12)
    dy[:2], dx[:2] = (0, 7), (0, -5)  # no move; moved off the image entirely
    expected = np.stack([_shift(_shift(img, int(a), 0), int(b), 1)
                         for img, a, b in zip(x, dy, dx)])
    assert np.array_equal(shift_images(x, dy, dx), expected)
    assert not shift_images(x, dy, dx)[1].any()


def test_augment_batch_is_the_per_image_transforms_with_the_batch_streams_draws():
    x, idx = images(16, (8, 8)), list(range(30, 46))
    shift, turn = PixelShift(1, p=0.5), SmallRotation(10, p=0.5)
    got = augment_batch([shift, turn], x, seed=4, epoch=2, indices=idx)
    rng = np.random.default_rng([4, 2, BATCH_STREAM, *idx])  # the documented order
    chosen = rng.random(16) < 0.5
    moves = rng.integers(-1, 2, size=(16, 2))
    ref = np.stack([_shift(_shift(img, int(m[0]), 0), int(m[1]), 1) if c else img
                    for img, m, c in zip(x, moves, chosen)])
    chosen = rng.random(16) < 0.5
    angles = rng.uniform(-10, 10, size=16)
    ref = np.stack([rotate(img, a) if c else img for img, a, c in zip(ref, angles, chosen)])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert 0 < chosen.sum() < 16
    again = augment_batch([shift, turn], x, seed=4, epoch=2, indices=idx)
    assert np.array_equal(got, again)
    assert not np.array_equal(got, augment_batch([shift, turn], x, 4, 3, idx))
    assert np.array_equal(augment_batch([SmallRotation(10, p=0.0)], x, 4, 2, idx), x)


@pytest.mark.parametrize("seed", [4, 2**32 + 5])
def test_the_batch_stream_is_default_rng_of_the_documented_key_list(seed):
    idx = [0, 7, 2**31, 2**32 - 1]  # the uint32 array form holds keys below 2**32 only
    expected = np.random.default_rng([seed, 3, BATCH_STREAM, *idx]).random(8)
    assert np.array_equal(batch_stream(seed, 3, idx).random(8), expected)


def test_a_stacked_batch_is_handed_over_as_the_samples_would_be():
    x, pad = images(6, (8, 8)), pad_batchify()
    labels, lengths = list(range(6)), [8, 8, 3, 8, 1, 8]
    via_samples = pad([(x[k], labels[k], lengths[k]) for k in range(6)])
    stacked = pad.stacked(x, labels, lengths)
    for a, b in zip(via_samples, stacked, strict=True):
        assert a.dtype == b.dtype and a.context == b.context
        assert np.array_equal(a.asnumpy(), b.asnumpy())
    with pytest.raises(DataError, match="sample 2 of the batch: length 9 outside 1..8"):
        pad.stacked(x, labels, [8, 8, 9, 8, 1, 8])
    samples = [(x[k], labels[k], lengths[k], (0, k)) for k in range(6)]
    fast = BatchAugmentingBatchify([PixelShift(1)], 0, pad)(samples)
    slow = BatchAugmentingBatchify([PixelShift(1)], 0, lambda s: pad(list(s)))(samples)
    assert all(np.array_equal(a.asnumpy(), b.asnumpy()) for a, b in zip(fast, slow))


def test_only_image_transforms_have_a_batch_form():
    assert batch_transforms(Compose([PixelShift(1), SmallRotation(5)])) is not None
    assert batch_transforms(SmallRotation(5)) is not None
    assert batch_transforms(Compose([PixelShift(1), Jitter(0.1)])) is None
    assert batch_transforms(None) is None


def _samples(shapes):
    rng = np.random.default_rng(5)
    return gluon.data.SimpleDataset(
        [(rng.random(s, dtype=np.float32), k % 3, np.float32(s[0])) for k, s in
         enumerate(shapes)])


def test_the_training_loader_uses_batches_only_for_images_of_one_shape():
    aug = Compose([PixelShift(1), SmallRotation(5)])
    fixed = AugmentedDataset(_samples([(8, 8)] * 6), aug, seed=0)
    view, batchify = fixed.for_loader(pad_batchify())
    assert isinstance(view, TaggedView) and isinstance(batchify, BatchAugmentingBatchify)
    ragged = AugmentedDataset(_samples([(8, 8), (6, 8)] * 3), aug, seed=0)
    assert ragged.for_loader(inner := pad_batchify()) == (ragged, inner)
    series = AugmentedDataset(_samples([(8, 8)] * 6), Jitter(0.1), seed=0)
    assert series.for_loader(inner) == (series, inner)


def _epochs(workers: int) -> list[np.ndarray]:
    data = AugmentedDataset(_samples([(8, 8)] * 20), Compose([PixelShift(1, p=0.5),
                                                             SmallRotation(10, p=0.5)]), 7)
    view, batchify = data.for_loader(pad_batchify())
    loader = make_loader(view, 8, True, 7, num_workers=workers, batchify_fn=batchify)
    return [b[0].asnumpy() for _ in range(2) for b in loader]


def test_batches_are_the_same_with_worker_processes_and_change_with_the_epoch():
    alone, workers = _epochs(0), _epochs(1)
    assert len(alone) == 6 and all(np.array_equal(a, b) for a, b in zip(alone, workers))
    assert not np.array_equal(alone[0], alone[3])  # epoch 1 draws other transforms
    raw = np.stack([s[0] for s in _samples([(8, 8)] * 20)])
    assert not any(np.array_equal(alone[0], raw[k:k + 8]) for k in range(13))


def test_the_samples_behind_a_training_loader_come_back_unaugmented():
    raw, pad = _samples([(8, 8)] * 6), pad_batchify()
    for transform in (Compose([PixelShift(1)]), Jitter(0.1)):  # batch mode, sample mode
        data = AugmentedDataset(raw, transform, seed=0)
        view, batchify = data.for_loader(pad)
        loader = make_loader(view, 4, True, 0, batchify_fn=batchify)
        assert unaugmented(loader) == (raw, pad)

"""Batch-level augmentation of fixed-shape images: one random stream per training batch.

:class:`~mxlstm.data.augment.AugmentedDataset` normally draws sample ``i`` of epoch ``e``
from ``default_rng([seed, e, i])`` and transforms it alone: for 8 x 8 digits that is
~90 µs of numpy calls a sample, a third of a training step. When every augmentation is
an image transform here (``pixelshift``, ``rotate``) and all training images share one
shape, training batches are instead augmented whole, vectorised, from the stream
``default_rng([seed, e, BATCH_STREAM, i_1, ..., i_B])`` of the batch's sample indices in
order: still a function of the seed and the (seeded) batch composition only, the same in
worker processes (the augmentation runs inside the batchify function), ~50x cheaper.
Each transform draws, for the whole batch and in this order, who is augmented
(``random(B) < p``, skipped when ``p = 1``), then its parameters for all ``B`` samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mxnet import gluon

from mxlstm.data.augment import PixelShift, SmallRotation
from mxlstm.data.augment_base import Compose
from mxlstm.data.batchify import PadBatchify
from mxlstm.data.image_ops import rotate_images, shift_images

BATCH_STREAM = 0x6261  # ("ba"): keeps batch streams apart from per-sample ones


def _chosen(p: float, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.ones(size, dtype=bool) if p >= 1.0 else rng.random(size) < p


def _apply(t: Any, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen = _chosen(t.p, len(images), rng)
    if isinstance(t, PixelShift):  # parameters drawn for every sample, chosen or not
        shift = rng.integers(-t.max_shift, t.max_shift + 1, size=(len(images), 2))
        move, params = shift_images, (shift[:, 0], shift[:, 1])
    else:
        move, params = rotate_images, (rng.uniform(-t.max_degrees, t.max_degrees,
                                                   size=len(images)),)
    out = images.copy()
    if chosen.any():
        out[chosen] = move(images[chosen], *(p[chosen] for p in params))
    return out


def batch_transforms(transform: Callable | None) -> list | None:
    """The augmentations of ``transform`` (one, or a :class:`Compose` of them) when every
    one has a batch form here; None otherwise."""
    items = transform.transforms if isinstance(transform, Compose) else [transform]
    if transform is None or not items:
        return None
    if all(type(t) in (PixelShift, SmallRotation) for t in items):
        return list(items)
    return None


def batch_stream(seed: int, epoch: int, indices: Sequence[int]) -> np.random.Generator:
    """``default_rng([seed, epoch, BATCH_STREAM, *indices])``, the batch's stream. Keys
    below 2**32 are one 32-bit word each of the seed's entropy, so they are handed over as
    one uint32 array (the same entropy, the same stream; a list of 67 Python ints costs
    ~0.2 ms to convert one by one)."""
    keys = [int(seed), int(epoch), BATCH_STREAM, *map(int, indices)]
    if min(keys) >= 0 and max(keys) < 2**32:
        return np.random.default_rng(np.array(keys, dtype=np.uint32))
    return np.random.default_rng(keys)


def augment_batch(transforms: Sequence, images: np.ndarray, seed: int, epoch: int,
                  indices: Sequence[int]) -> np.ndarray:
    """Apply ``transforms`` to ``images (B, H, W)`` float32, samples ``indices`` of
    ``epoch``, from the batch stream described in the module docstring."""
    rng = batch_stream(seed, epoch, indices)
    for t in transforms:
        images = _apply(t, images, rng)
    return images


def one_image_shape(dataset: Any) -> bool:
    """True when every sample's features are 2-D images of one shape."""
    shapes = {np.shape(dataset[i][0]) for i in range(len(dataset))}
    return len(shapes) == 1 and len(next(iter(shapes))) == 2


class TaggedView(gluon.data.Dataset):
    """The samples of an ``AugmentedDataset``, not augmented, each with ``(epoch, index)``
    appended (for :class:`BatchAugmentingBatchify`)."""

    def __init__(self, augmented: Any) -> None:
        self._augmented = augmented

    def __len__(self) -> int:
        return len(self._augmented)

    def __getitem__(self, idx: int) -> tuple:
        sample, epoch, index = self._augmented.raw_sample(idx)
        return (*sample, (epoch, index))


class BatchAugmentingBatchify:
    """A ``batchify_fn`` that augments the batch, then calls ``inner`` on it.

    Takes the samples of :class:`TaggedView`: ``(image, label[, length],
    (epoch, index))``; gives ``inner`` the samples without the last field.
    """

    def __init__(self, transforms: Sequence, seed: int, inner: Callable) -> None:
        self.transforms, self.seed, self.inner = list(transforms), int(seed), inner

    def __call__(self, samples: Sequence[tuple]) -> Any:
        tags = [s[-1] for s in samples]
        epochs = {epoch for epoch, _ in tags}
        if len(epochs) != 1:  # a batch sampler never mixes epochs
            raise ValueError(f"one batch holds samples of epochs {sorted(epochs)}")
        images = np.stack([np.asarray(s[0], dtype=np.float32) for s in samples])
        images = augment_batch(self.transforms, images, self.seed, epochs.pop(),
                               [index for _, index in tags])
        if isinstance(self.inner, PadBatchify) and all(len(s) == 4 for s in samples):
            # (image, label, length, tag): hand the stacked batch over as it is
            return self.inner.stacked(images, [s[1] for s in samples],
                                      [s[2] for s in samples])
        return self.inner([(images[k], *s[1:-1]) for k, s in enumerate(samples)])


def unaugmented(loader: Any) -> tuple[Any, Callable]:
    """``(dataset, batchify_fn)`` behind a training ``loader`` without augmentation: the
    wrapped samples, and the padding batchify (for calibration data at export)."""
    from mxlstm.data.augment import AugmentedDataset

    dataset, batchify = loader._dataset, loader._batchify_fn
    if isinstance(dataset, TaggedView):
        dataset = dataset._augmented
    while isinstance(dataset, AugmentedDataset):
        dataset = dataset._dataset
    if isinstance(batchify, BatchAugmentingBatchify):
        batchify = batchify.inner
    return dataset, batchify


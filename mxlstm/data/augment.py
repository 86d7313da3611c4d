"""Seeded, composable data augmentation for training samples.

Every augmentation is a small class called as ``aug(x, rng) -> new_x`` with a numpy
``Generator`` and applied with probability ``p``; none modifies ``x`` in place. Inputs:

* sequences: ``(T, C)`` (or ``(T,)``) float32, time on axis 0;
* images read as sequences: ``(rows, cols)``, rows are time steps;
* text: a 1-D list/array of token ids.

:class:`AugmentedDataset` wraps the *training* dataset only; evaluation data is simply
not wrapped. The random stream of sample ``i`` in epoch ``e`` is
``default_rng([seed, e, i])``, so results do not depend on order, batching or workers.
Training loaders of images of one shape with only ``pixelshift`` / ``rotate`` augment
whole batches from one stream instead (:meth:`AugmentedDataset.for_loader`,
:mod:`mxlstm.data.augment_batch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mxnet import gluon

from mxlstm.data.augment_base import (
    Augmentation,
    Compose,
    _ids,
    _seq,
    _shift,
    _steps,
    check_number,
    check_span,
)
from mxlstm.data.batching import epoch_seed
from mxlstm.data.image_ops import rotate, rotate_images
from mxlstm.errors import ConfigError, DataError

__all__ = [
    "AugmentedDataset", "Augmentation", "Compose", "Jitter", "MixSameClass", "PixelShift",
    "RandomCrop", "RandomSwap", "Scale", "SmallRotation", "TimeMask", "TimeShift",
    "TimeStretch", "TokenDropout", "UnknownSubstitution", "rotate", "rotate_images",
]


class TimeShift(Augmentation):
    """Shift in time by ``k ~ U{-m..m}`` steps; ``mode='pad'`` zero-fills, 'wrap' rolls.

    ``max_shift`` is steps (int) or a fraction of the length (float < 1).
    """

    def __init__(self, max_shift: int | float, mode: str = "pad", p: float = 1.0) -> None:
        super().__init__(p)
        self.max_shift = check_span("max_shift", max_shift)
        if mode not in ("pad", "wrap"):
            raise ConfigError(f"TimeShift mode must be 'pad' or 'wrap', got {mode!r}")
        self.mode = mode

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x)
        m = min(_steps(self.max_shift, len(x)), len(x) - 1)
        k = int(rng.integers(-m, m + 1))
        return np.roll(x, k, axis=0) if self.mode == "wrap" else _shift(x, k, 0)


class Jitter(Augmentation):
    """Add Gaussian noise ``N(0, sigma^2)`` to every value."""

    def __init__(self, sigma: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.sigma = float(check_number("sigma", sigma, 0.0))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x)
        return x + rng.normal(0.0, self.sigma, x.shape).astype(np.float32)


class Scale(Augmentation):
    """Multiply each channel by its own factor ``~ N(1, sigma^2)``."""

    def __init__(self, sigma: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.sigma = float(check_number("sigma", sigma, 0.0))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x)
        return x * rng.normal(1.0, self.sigma, x.shape[1:]).astype(np.float32)


class TimeMask(Augmentation):
    """Zero a random contiguous span of ``1..max_width`` steps (int, or fraction < 1).

    ``max_width=0`` masks nothing; a positive fraction masks at least one step.
    """

    def __init__(self, max_width: int | float, p: float = 1.0) -> None:
        super().__init__(p)
        self.max_width = check_span("max_width", max_width)

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x).copy()
        widest = min(_steps(self.max_width, len(x)), len(x))
        if widest == 0:
            return x
        width = int(rng.integers(1, widest + 1))
        start = int(rng.integers(0, len(x) - width + 1))
        x[start : start + width] = 0.0
        return x


class RandomCrop(Augmentation):
    """Keep a random window of ``ceil(min_fraction * T)..T`` steps (changes the length)."""

    def __init__(self, min_fraction: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.min_fraction = float(check_number("min_fraction", min_fraction, 1e-9, 1.0))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x)
        low = min(max(math.ceil(self.min_fraction * len(x)), 1), len(x))
        size = int(rng.integers(low, len(x) + 1))
        start = int(rng.integers(0, len(x) - size + 1))
        return x[start : start + size].copy()


class TimeStretch(Augmentation):
    """Resample to ``round(T * f)`` steps, ``f ~ U(min_factor, max_factor)``, linearly.

    ``f > 1`` slows the signal down (longer), ``f < 1`` speeds it up; the first and last
    values are kept. Changes the length.
    """

    def __init__(self, min_factor: float, max_factor: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.min_factor = float(check_number("min_factor", min_factor, 1e-3, 1e3))
        self.max_factor = float(check_number("max_factor", max_factor, self.min_factor, 1e3))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x)
        size = max(1, int(round(len(x) * rng.uniform(self.min_factor, self.max_factor))))
        pos = np.linspace(0.0, len(x) - 1, size)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, len(x) - 1)
        w = (pos - i0).reshape((-1,) + (1,) * (x.ndim - 1))
        return ((1.0 - w) * x[i0] + w * x[i1]).astype(np.float32)


class MixSameClass(Augmentation):
    """Blend a sample with another of its class: ``lam*x + (1-lam)*other``.

    ``lam ~ Beta(alpha, alpha)`` folded to ``>= 0.5`` so ``x`` dominates. A longer
    ``other`` is cropped to a random window of ``x``'s length; a shorter one is blended
    into the first ``len(other)`` steps. Only :class:`AugmentedDataset` can apply it (it
    knows the other samples); calling it directly raises :class:`ConfigError`.
    """

    def __init__(self, alpha: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.alpha = float(check_number("alpha", alpha, 1e-6))

    def apply(self, x: Any, rng: np.random.Generator) -> Any:
        raise ConfigError("MixSameClass needs other samples: use it inside AugmentedDataset")

    def mix(self, x: Any, other: Any, rng: np.random.Generator) -> np.ndarray:
        """Blend ``x`` (T, C) with ``other`` (T', C) as described above."""
        x, other = _seq(x), _seq(other)
        if x.shape[1:] != other.shape[1:]:
            raise DataError(f"cannot mix shapes {x.shape} and {other.shape}")
        lam = rng.beta(self.alpha, self.alpha)
        lam = np.float32(max(lam, 1.0 - lam))
        if len(other) > len(x):
            start = int(rng.integers(0, len(other) - len(x) + 1))
            other = other[start : start + len(x)]
        out = x.copy()
        out[: len(other)] = lam * x[: len(other)] + (1 - lam) * other
        return out


class PixelShift(Augmentation):
    """Shift an image ``(rows, cols)`` by up to ``max_shift`` pixels each way, zero fill."""

    def __init__(self, max_shift: int, p: float = 1.0) -> None:
        super().__init__(p)
        self.max_shift = int(check_number("max_shift", max_shift, 0, integer=True))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        x = _seq(x, (2,))
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        return _shift(_shift(x, int(dy), 0), int(dx), 1)


class SmallRotation(Augmentation):
    """Rotate an image by an angle ``~ U(-max_degrees, max_degrees)`` (see :func:`rotate`)."""

    def __init__(self, max_degrees: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.max_degrees = float(check_number("max_degrees", max_degrees, 0.0, 180.0))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        return rotate(_seq(x, (2,)), rng.uniform(-self.max_degrees, self.max_degrees))


class TokenDropout(Augmentation):
    """Drop each token with probability ``rate``, keeping order; never drops them all."""

    def __init__(self, rate: float, p: float = 1.0) -> None:
        super().__init__(p)
        self.rate = float(check_number("rate", rate, 0.0, 1.0))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        ids = _ids(x)
        keep = rng.random(len(ids)) >= self.rate
        if len(ids) and not keep.any():
            keep[rng.integers(len(ids))] = True
        return ids[keep]


class RandomSwap(Augmentation):
    """Swap ``n`` randomly chosen pairs of neighbouring tokens, one after another."""

    def __init__(self, n: int, p: float = 1.0) -> None:
        super().__init__(p)
        self.n = int(check_number("n", n, 0, integer=True))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        ids = _ids(x)
        if len(ids) < 2:
            return ids
        for i in rng.integers(0, len(ids) - 1, size=self.n):
            ids[i], ids[i + 1] = ids[i + 1], ids[i]
        return ids


class UnknownSubstitution(Augmentation):
    """Replace each token by ``unk_id`` with probability ``rate``."""

    def __init__(self, rate: float, unk_id: int, p: float = 1.0) -> None:
        super().__init__(p)
        self.rate = float(check_number("rate", rate, 0.0, 1.0))
        self.unk_id = int(check_number("unk_id", unk_id, 0, integer=True))

    def apply(self, x: Any, rng: np.random.Generator) -> np.ndarray:
        ids = _ids(x)
        ids[rng.random(len(ids)) < self.rate] = self.unk_id
        return ids


class AugmentedDataset(gluon.data.Dataset):
    """Apply ``transform`` to the features of a training dataset's samples.

    Samples are ``(features, label[, length])``. ``features`` is copied first (the wrapped
    dataset is never modified); the label is returned untouched and ``length`` becomes the
    new ``len(features)`` when the transform changes it (so ``features`` must not be
    padded). Sample ``i`` of epoch ``e`` uses ``np.random.default_rng([seed, e, i])``; the
    epoch is :meth:`set_epoch`'s value, or the one an
    :class:`~mxlstm.data.batching.EpochIndex` from ``make_loader`` carries (which also
    reaches worker processes).

    A :class:`MixSameClass` inside ``transform`` (a top-level entry of a :class:`Compose`)
    runs first, with a random other sample of the same class taken from ``labels`` (read
    from the samples when not given).
    """

    def __init__(self, dataset: Any, transform: Callable | None, seed: int,
                 labels: Sequence | np.ndarray | None = None) -> None:
        self._dataset = dataset
        epoch_seed(seed)  # validates
        self._seed = int(seed)
        self._epoch = 0
        items = transform.transforms if isinstance(transform, Compose) else (
            [] if transform is None else [transform])
        mixes = [t for t in items if isinstance(t, MixSameClass)]
        if len(mixes) > 1:
            raise ConfigError("at most one MixSameClass per transform")
        self._mix = mixes[0] if mixes else None
        self._transform = Compose([t for t in items if not isinstance(t, MixSameClass)])
        self._by_class: dict[Any, np.ndarray] = {}
        if self._mix is not None:
            if labels is None:
                labels = [dataset[i][1] for i in range(len(dataset))]
            self._labels = np.asarray(labels)
            if self._labels.shape != (len(dataset),):
                raise DataError(f"labels must have shape ({len(dataset)},), "
                                f"got {self._labels.shape}")
            for key in np.unique(self._labels):
                self._by_class[key] = np.flatnonzero(self._labels == key)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for indices that do not carry their own."""
        epoch_seed(self._seed, epoch)
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._dataset)

    def raw_sample(self, idx: int) -> tuple[tuple, int, int]:
        """``(sample, epoch, index)`` of the wrapped dataset, not augmented."""
        epoch = getattr(idx, "epoch", self._epoch)
        index = int(idx) + (len(self) if int(idx) < 0 else 0)
        sample = self._dataset[index]
        if not isinstance(sample, tuple | list) or len(sample) not in (2, 3):
            raise DataError(f"sample {index}: expected (features, label[, length])")
        return tuple(sample), int(epoch), index

    def for_loader(self, batchify_fn: Callable) -> tuple[Any, Callable]:
        """``(dataset, batchify_fn)`` for the training loader: ``(self, batchify_fn)``, or
        for images of one shape with only batch-capable augmentations a view whose samples
        carry ``(epoch, index)`` and a batchify that augments whole batches from one
        stream (:mod:`mxlstm.data.augment_batch`)."""
        from mxlstm.data import augment_batch as batch

        transforms = None if self._mix else batch.batch_transforms(self._transform)
        if transforms is None or not batch.one_image_shape(self._dataset):
            return self, batchify_fn
        return (batch.TaggedView(self),
                batch.BatchAugmentingBatchify(transforms, self._seed, batchify_fn))

    def __getitem__(self, idx: int) -> tuple:
        sample, epoch, index = self.raw_sample(idx)
        rng = np.random.default_rng([self._seed, epoch, index])
        features = np.array(sample[0], copy=True)
        x = features
        if self._mix is not None and (self._mix.p >= 1.0 or rng.random() < self._mix.p):
            x = self._mixed(x, index, rng)
        x = self._transform(x, rng)
        if len(sample) == 2:
            return x, sample[1]
        length = sample[2]
        if len(x) != len(features):
            length = np.asarray(length).dtype.type(len(x))
        return x, sample[1], length

    def _mixed(self, x: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
        pool = self._by_class[self._labels[index]]
        pool = pool[pool != index]
        if len(pool) == 0:
            return x
        other = self._dataset[int(rng.choice(pool))][0]
        return self._mix.mix(x, other, rng)

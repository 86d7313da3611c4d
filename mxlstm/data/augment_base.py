"""What every augmentation shares: the number checks of their arguments (also used by
:mod:`mxlstm.data.augment_spec`), the array helpers, :class:`Augmentation` and
:class:`Compose`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mxlstm.errors import ConfigError, DataError


def check_number(name: str, value: Any, low: float, high: float = math.inf,
                 integer: bool = False) -> Any:
    """``value`` if it is a number (an int with ``integer``) in ``[low, high]``, else a
    ConfigError naming ``name``: the one number check of augmentations and their specs."""
    ok_type = isinstance(value, int | np.integer) if integer else isinstance(
        value, int | float | np.integer | np.floating)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} in [{low}, {high}], got {value!r}")
    return value


def check_span(name: str, value: Any) -> int | float:
    """Steps (int >= 0) or a fraction of the length (float in [0, 1))."""
    check_number(name, value, 0)
    if isinstance(value, float | np.floating) and value >= 1:
        if value != int(value):
            raise ConfigError(f"{name}: use an int for steps or a fraction < 1, got {value}")
        value = int(value)
    return value


def _steps(span: int | float, length: int) -> int:
    """Steps of a span; a positive fraction gives at least one step."""
    if isinstance(span, int | np.integer):
        return int(span)
    return max(1, int(span * length)) if span > 0 else 0


def _seq(x: Any, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """``x`` as float32: a non-empty (T,) or (T, C) sequence, or with ``ndims=(2,)`` an image."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim not in ndims or arr.size == 0:
        raise DataError(f"expected a non-empty {ndims}-D float array, got shape {arr.shape}")
    return arr


def _ids(x: Any) -> np.ndarray:
    arr = np.array(x)
    if arr.size == 0:
        return arr.astype(np.int32)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"expected a 1-D array of token ids, got {arr.dtype} {arr.shape}")
    return arr


def _shift(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Move ``x`` by ``k`` along ``axis`` (positive: later/right), zero fill."""
    out = np.zeros_like(x)
    n = x.shape[axis]
    if abs(k) >= n:
        return out
    src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    src[axis], dst[axis] = (slice(0, n - k), slice(k, n)) if k >= 0 else (slice(-k, n),
                                                                          slice(0, n + k))
    out[tuple(dst)] = x[tuple(src)]
    return out


class Augmentation:
    """Base class: ``__call__(x, rng)`` applies :meth:`apply` with probability ``p``."""

    def __init__(self, p: float = 1.0) -> None:
        self.p = float(check_number("p", p, 0.0, 1.0))

    def __call__(self, x: Any, rng: np.random.Generator) -> Any:
        if self.p < 1.0 and rng.random() >= self.p:
            return x
        return self.apply(x, rng)

    def apply(self, x: Any, rng: np.random.Generator) -> Any:
        """Return an augmented copy of ``x``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose:
    """Apply augmentations in order: ``Compose([TimeShift(3), Jitter(0.03)])(x, rng)``."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise ConfigError(f"not an augmentation: {t!r}")

    def __call__(self, x: Any, rng: np.random.Generator) -> Any:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"

"""Parse an augmentation spec (``"shift:0.1,jitter:0.03@0.5"`` or a dict) into a Compose."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from mxlstm.data.augment import (
    Augmentation,
    Compose,
    Jitter,
    MixSameClass,
    PixelShift,
    RandomCrop,
    RandomSwap,
    Scale,
    SmallRotation,
    TimeMask,
    TimeShift,
    TimeStretch,
    TokenDropout,
    UnknownSubstitution,
)
from mxlstm.data.augment_base import check_number
from mxlstm.errors import ConfigError

_BY_NAME: dict[str, Callable[..., Augmentation]] = {
    "shift": TimeShift, "wrapshift": functools.partial(TimeShift, mode="wrap"),
    "jitter": Jitter, "scale": Scale, "mask": TimeMask, "crop": RandomCrop,
    "stretch": TimeStretch, "mix": MixSameClass, "pixelshift": PixelShift,
    "rotate": SmallRotation, "tokendrop": TokenDropout, "swap": RandomSwap,
    "unk": UnknownSubstitution,
}


def _from_value(name: str, value: Any, unk_id: int | None) -> Augmentation:
    if name == "stretch":
        return TimeStretch(1.0 - check_number("stretch", value, 0.0, 0.999), 1.0 + value)
    if name == "unk":
        if unk_id is None:
            raise ConfigError("'unk' needs unk_id (build_augmentation(..., unk_id=...))")
        return UnknownSubstitution(value, unk_id)
    return _BY_NAME[name](value)


def _make(name: str, value: Any, unk_id: int | None) -> Augmentation:
    if name not in _BY_NAME:
        raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(_BY_NAME)}")
    if not isinstance(value, Mapping):
        return _from_value(name, value, unk_id)
    kwargs = dict(value)
    if name == "unk" and unk_id is not None:
        kwargs.setdefault("unk_id", unk_id)
    try:
        return _BY_NAME[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"augmentation {name!r}: {err}") from None


def _parse_number(text: str, where: str) -> int | float:
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    raise ConfigError(f"{where}: {text!r} is not a finite number")


def build_augmentation(spec: str | Mapping[str, Any] | None,
                       unk_id: int | None = None) -> Compose:
    """Parse an augmentation spec into a :class:`Compose`, in the order given.

    Parameters
    ----------
    spec : str or dict or None
        ``"shift:0.1,jitter:0.03,scale:0.1,mask:0.1@0.5"``: comma-separated
        ``name:value[@p]`` with ``p`` the probability of applying it, or a dict
        ``{name: value}`` / ``{name: {keyword: value, ...}}`` (keywords of the class).
        Names and their value: ``shift``/``wrapshift`` max steps (int) or fraction (<1),
        ``jitter`` and ``scale`` sigma, ``mask`` max width (steps or fraction), ``crop``
        min fraction, ``stretch`` v for factors in ``[1-v, 1+v]``, ``mix`` alpha,
        ``pixelshift`` pixels, ``rotate`` degrees, ``tokendrop`` and ``unk`` rate,
        ``swap`` count. Empty or None gives an identity Compose.
    unk_id : int, optional
        Token id used by ``unk``.

    Raises
    ------
    ConfigError
        Unknown names, malformed entries, values out of range.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return Compose([])
    if isinstance(spec, Mapping):
        return Compose([_make(str(k), v, unk_id) for k, v in spec.items()])
    if not isinstance(spec, str):
        raise ConfigError(f"augmentation spec must be a string or a dict, got {type(spec)}")
    augs = []
    for item in spec.split(","):
        body, _, prob = item.strip().partition("@")
        name, sep, value = body.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"augmentation entry {item!r}: expected name:value[@p]")
        aug = _make(name.strip(), _parse_number(value.strip(), item), unk_id)
        if prob:
            aug.p = float(check_number("p", _parse_number(prob.strip(), item), 0.0, 1.0))
        augs.append(aug)
    return Compose(augs)

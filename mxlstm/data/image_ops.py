"""Vectorised image moves for augmentation: rotation and pixel shifts of ``(B, H, W)``
stacks, float64 inside, bit-equal to moving each image alone (tested against a pixel by
pixel reference). Used by :mod:`mxlstm.data.augment` (one image) and
:mod:`mxlstm.data.augment_batch` (a whole batch)."""

from __future__ import annotations

import functools

import numpy as np

# Row and column offsets (+ 1: the zero border) of the four bilinear neighbours, (4, 1, 1, 1):
# the neighbour axis first, so that every elementwise loop runs over whole (B, H, W) blocks.
_NEIGHBOURS = (np.array([1, 1, 2, 2])[:, None, None, None],
               np.array([1, 2, 1, 2])[:, None, None, None])


def clamp_index(index: np.ndarray, high: int) -> np.ndarray:
    """``index`` (integers) clamped to ``0..high`` in place (``np.clip`` costs ~50 µs a
    call on small integer arrays, ``maximum`` + ``minimum`` ~2 µs)."""
    np.maximum(index, 0, out=index)
    return np.minimum(index, high, out=index)


@functools.lru_cache(maxsize=32)
def _centred_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of every pixel from the centre of an ``(h, w)`` image
    (read-only; cached, as images of one data set share their shape)."""
    dy, dx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = dy - (h - 1) / 2.0, dx - (w - 1) / 2.0
    dy.flags.writeable = dx.flags.writeable = False
    return dy, dx


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``(rows, cols)`` about its centre, bilinear, zero outside.

    Positive angles turn the picture clockwise as displayed (row 0 on top):
    ``rotate(img, 90)`` equals ``np.rot90(img, -1)`` for a square image.
    """
    return rotate_images(np.asarray(image)[None], np.array([degrees]))[0]


def rotate_images(images: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """:func:`rotate` every image of ``images (B, H, W)`` by its angle ``degrees (B,)``:
    float64 inside, float32 out."""
    b, h, w = images.shape
    theta = np.radians(np.asarray(degrees, dtype=np.float64))
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dy, dx = _centred_grid(h, w)
    sy = cos * dy - sin * dx + cy  # (B, H, W): source position of every output pixel
    sx = sin * dy + cos * dx + cx
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = sy - y0, sx - x0
    # Each image inside a border of zeros: a neighbour outside the image, clamped into
    # the border, reads 0. One gather of the four neighbours of every pixel from the
    # flattened stack of bordered images, no masks.
    padded = np.zeros((b, h + 2, w + 2), dtype=images.dtype)
    padded[:, 1:-1, 1:-1] = images
    base = np.arange(b) * ((h + 2) * (w + 2))  # (B,): where each bordered image starts
    rows = clamp_index(y0.astype(np.int64) + _NEIGHBOURS[0], h + 1) * (w + 2)
    cols = clamp_index(x0.astype(np.int64) + _NEIGHBOURS[1], w + 1)
    rows += base[:, None, None]
    near = padded.ravel().take(rows + cols)  # (4, B, H, W): (0,0) (0,1) (1,0) (1,1)
    gy, gx = 1 - fy, 1 - fx
    out = near[0] * (gy * gx)  # summed from 0 in this order, as pixel by pixel:
    out += 0.0                 # 0 + (-0.0) is 0.0
    out += near[1] * (gy * fx)
    out += near[2] * (fy * gx)
    out += near[3] * (fy * fx)
    return out.astype(np.float32)


def shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Shift every image of ``images (B, H, W)`` by ``(dy[b], dx[b])`` pixels (down,
    right; zero fill): ``_shift(_shift(img, dy, 0), dx, 1)`` of each image."""
    b, h, w = images.shape
    m = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0), 0))
    hp, wp = h + 2 * m, w + 2 * m
    padded = np.zeros((b, hp, wp), dtype=images.dtype)
    padded[:, m:m + h, m:m + w] = images
    rows = clamp_index(np.arange(h)[None, :] - dy[:, None] + m, hp - 1)  # (B, H) source row
    cols = clamp_index(np.arange(w)[None, :] - dx[:, None] + m, wp - 1)
    rows += (np.arange(b) * hp)[:, None]  # rows of the (B * hp, wp) stack: one flat gather
    return padded.ravel().take((rows * wp)[:, :, None] + cols[:, None, :])

"""Batchify functions: samples ``(features, label[, length])`` -> padded batch arrays.

:func:`pad_batchify` right-pads sequences of different lengths to what GluonNLP's ``Pad``
gives. Numpy features are padded (or, all of one shape, stacked) in numpy and handed to
MXNet without a copy (:meth:`PadBatchify.stacked`, :func:`hand_over`; ``stacked`` is also
called directly with an already stacked batch by :mod:`mxlstm.data.augment_batch`):
``Pad`` copies every batch into a new shared-memory NDArray (``cpu_shared``, which the
model's context then copies again), about 2 ms of a text batch. Other features (lists,
NDArrays) go through ``Pad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import mxnet as mx
import numpy as np
from gluonnlp.data.batchify import Pad, Stack, Tuple

from mxlstm.errors import DataError


class PadBatchify:
    """Pad features to the right; stack labels and lengths (see :func:`pad_batchify`)."""

    def __init__(self, pad_val: float, label_dtype: str) -> None:
        self._label_dtype, self._pad_val = label_dtype, pad_val
        self._with_length = Tuple(
            Pad(axis=0, pad_val=pad_val), Stack(dtype=label_dtype), Stack(dtype="float32")
        )
        self._without_length = Tuple(
            Pad(axis=0, pad_val=pad_val, ret_length=True), Stack(dtype=label_dtype)
        )

    def __call__(self, samples: Sequence[tuple]) -> tuple[mx.nd.NDArray, ...]:
        width = len(samples[0])
        if width not in (2, 3) or any(len(s) != width for s in samples):
            raise DataError("samples must all be (features, label[, length]) tuples")
        sizes = [len(s[0]) for s in samples]
        lengths = np.asarray([s[2] for s in samples]) if width == 3 else np.asarray(sizes)
        if width == 3:
            _check_lengths(lengths, sizes)
        x = self._padded(samples)
        if x is not None:
            return self.stacked(x, [s[1] for s in samples], lengths, checked=True)
        if width == 2:  # lists or NDArrays: GluonNLP's Pad
            (x, length), label = self._without_length(samples)
            return x, label, length.astype("float32")
        return self._with_length(samples)

    def _padded(self, samples: Sequence[tuple]) -> np.ndarray | None:
        """The features of ``samples`` right-padded in numpy, ``(N, T_max, ...)``: what
        GluonNLP's ``Pad`` computes (in the first sample's dtype, ``pad_val`` after each
        end), without its copy into a shared-memory NDArray; None unless every sample's
        features are a numpy array of at least one axis with the first one's trailing shape
        (then ``Pad`` itself runs)."""
        first = samples[0][0]
        if not isinstance(first, np.ndarray) or first.ndim == 0:
            return None
        if not all(isinstance(s[0], np.ndarray) and s[0].shape[1:] == first.shape[1:]
                   for s in samples):
            return None
        if all(s[0].shape == first.shape for s in samples):  # nothing to pad
            return np.stack([s[0] for s in samples]).astype(first.dtype, copy=False)
        longest = max(len(s[0]) for s in samples)
        out = np.full((len(samples), longest, *first.shape[1:]), self._pad_val,
                      dtype=first.dtype)
        for row, sample in zip(out, samples):
            row[:len(sample[0])] = sample[0]
        return out

    def stacked(self, x: np.ndarray, labels: Sequence, lengths: Sequence,
                checked: bool = False) -> tuple[mx.nd.NDArray, ...]:
        """What the call gives for the samples ``(x[k], labels[k], lengths[k])``, features
        already stacked ``x (N, T, ...)``: what ``Tuple(Pad, Stack, Stack)`` gives for
        features of one shape (same values and dtypes), on ``cpu(0)``, the arrays handed
        over without a copy (:func:`hand_over`; ``x`` becomes read-only). ``checked``: the
        lengths were checked against ``T``."""
        lengths = np.asarray(lengths)
        if not checked:
            _check_lengths(lengths, [x.shape[1]] * len(x))
        labels = np.asarray(labels).astype(self._label_dtype)
        return tuple(hand_over(a) for a in (x, labels, lengths.astype(np.float32)))


def hand_over(array: np.ndarray) -> mx.nd.NDArray:
    """``array`` as an NDArray on ``cpu(0)`` sharing its memory, through numpy's own DLPack
    export (~6 µs; ``mx.nd.from_numpy`` builds the DLPack struct in ctypes, ~40 µs;
    ``mx.nd.array`` copies, ~170 µs). MXNet owns the capsule and releases the array when
    the NDArray is freed; ``array`` is made read-only, as ``from_numpy`` does, so that the
    batch cannot change under a queued operator."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # numpy exports writeable arrays only
        array = array.copy()
    out = mx.nd.from_dlpack(array.__dlpack__())
    array.flags.writeable = False
    return out


def _check_lengths(lengths: np.ndarray, sizes: Sequence[int]) -> None:
    """Every ``lengths[i]`` in ``1..sizes[i]``, else :class:`DataError` naming the first."""
    bad = np.flatnonzero(~((lengths >= 1) & (lengths <= np.asarray(sizes))))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"sample {i} of the batch: length {lengths[i]} outside 1..{sizes[i]}")


def pad_batchify(pad_val: float = 0.0, label_dtype: str = "int32") -> PadBatchify:
    """A ``batchify_fn`` that right-pads sequences of different lengths.

    Parameters
    ----------
    pad_val : float, default 0.0
        Value written after each sequence's end (use the padding id for tokens).
    label_dtype : str, default "int32"
        Dtype of the stacked labels ("float32" for regression).

    Returns
    -------
    callable
        Maps samples ``(features (T_i, C) | ids (T_i,), label, length)`` to
        ``(x (N, T_max, C) | (N, T_max), label (N,), valid_length (N,) float32)``, built from
        ``gluonnlp.data.batchify.Tuple(Pad, Stack, Stack)`` (numpy features are padded in
        numpy to the same values and handed over without a copy). ``x`` keeps the
        features' dtype. Two-field samples ``(features, label)`` get ``valid_length =
        T_i``. Arrays come back on ``cpu(0)`` for numpy features, else on
        ``cpu_shared(0)``: move them with :func:`to_context`.
    """
    return PadBatchify(pad_val, label_dtype)

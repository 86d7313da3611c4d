"""Small symbolic helpers on time-major batches ``(T, N, C)`` shared by both paths."""

from __future__ import annotations


def reverse_time(F, x, valid_length=None):
    """Reverse ``x (T, N, C)`` in time, within each sequence's valid length if given.

    With lengths the padding stays at the end: ``[a b c 0 0] -> [c b a 0 0]``.
    """
    if valid_length is None:
        return F.reverse(x, axis=0)
    return F.SequenceReverse(x, valid_length, use_sequence_length=True)


def length_mask(F, x, valid_length):
    """``(T, N)`` float mask, 1 where step ``t < valid_length[n]``, from ``x (T, N, ...)``."""
    steps = F.contrib.arange_like(x, axis=0)
    return F.broadcast_lesser(F.reshape(steps, shape=(-1, 1)),
                              F.reshape(valid_length, shape=(1, -1)))


def zeros_like_state(F, x, size: int):
    """Zeros ``(N, size)`` built from ``x (T, N, C)`` (Symbols have no ``.shape``)."""
    first = F.slice_axis(F.slice_axis(x, axis=0, begin=0, end=1), axis=2, begin=0, end=1)
    return F.broadcast_axis(F.reshape(F.zeros_like(first), shape=(-1, 1)), axis=1, size=size)

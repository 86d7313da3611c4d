"""Seeded long-memory benchmark tasks as plain numpy arrays.

* :func:`adding_problem` -- regression on the sum of two marked values (Hochreiter &
  Schmidhuber 1997; Le, Jaitly & Hinton 2015).
* :func:`copy_memory` -- reproduce a symbol sequence after a long blank delay
  (Arjovsky, Shah & Bengio 2016).

Both are deterministic functions of their arguments (``seed`` included): the same call gives
bit-identical arrays in any process.
"""

from __future__ import annotations

import math

import numpy as np
from mxnet import gluon

from mxlstm.errors import ConfigError

__all__ = [
    "ADDING_BASELINE_MSE",
    "adding_problem",
    "as_dataset",
    "copy_memory",
    "copy_memory_baseline",
]

#: MSE of always predicting 1.0 on the adding problem: Var(u1 + u2) = 2 / 12.
ADDING_BASELINE_MSE = 1.0 / 6.0


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def adding_problem(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate the adding problem.

    Parameters
    ----------
    n : int
        Number of sequences.
    length : int
        Sequence length ``T`` (>= 2).
    seed : int
        Seed of the generator (>= 0).

    Returns
    -------
    x : np.ndarray, (n, T, 2) float32
        Channel 0 holds values drawn from uniform[0, 1); channel 1 is a marker with exactly
        two 1s, one at a step in ``[0, T // 2)`` and one in ``[T // 2, T)``.
    y : np.ndarray, (n,) float32
        Sum of the two marked values. Always predicting 1.0 gives an MSE of
        :data:`ADDING_BASELINE_MSE` (~0.167); a model must beat it to show any memory.
    """
    n = _check_int("n", n, 1)
    length = _check_int("length", length, 2)
    seed = _check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    rows = np.arange(n)
    marker = np.zeros((n, length), dtype=np.float32)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = np.stack([values, marker], axis=-1)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return x, y


def copy_memory(
    n: int, seq_len: int, delay: int, num_symbols: int = 8, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Generate the copy-memory task.

    Layout of one row (``S = seq_len``, ``D = delay``, total length ``S + D + S``)::

        step:    0 .. S-1 | S .. S+D-2 | S+D-1 | S+D .. 2S+D-1
        x:       a_1..a_S |  0 ... 0   |  K+1  |   0 ... 0
        y:       0 ... 0  |  0 ... 0   |   0   |  a_1 .. a_S

    ``a_i`` are uniform in ``1..K`` (``K = num_symbols``), ``0`` is the blank and ``K + 1``
    the delimiter that says "start copying now". The vocabulary therefore has ``K + 2``
    tokens. A memoryless model that outputs blanks and then uniform guesses has the
    cross-entropy ``S * log(K) / (2S + D)`` per step (:func:`copy_memory_baseline`).

    Parameters
    ----------
    n : int
        Number of sequences.
    seq_len : int
        Number of symbols to remember, ``S`` (>= 1).
    delay : int
        Steps from the end of the symbols to the first output step, ``D`` (>= 1); the
        delimiter sits on the last of them.
    num_symbols : int, default 8
        Alphabet size ``K`` (>= 2).
    seed : int
        Seed of the generator (>= 0), keyword only.

    Returns
    -------
    x : np.ndarray, (n, 2S + D) int32
        Input tokens.
    y : np.ndarray, (n, 2S + D) int32
        Target tokens.
    """
    n = _check_int("n", n, 1)
    seq_len = _check_int("seq_len", seq_len, 1)
    delay = _check_int("delay", delay, 1)
    num_symbols = _check_int("num_symbols", num_symbols, 2)
    seed = _check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    total = 2 * seq_len + delay
    symbols = rng.integers(1, num_symbols + 1, size=(n, seq_len), dtype=np.int32)
    x = np.zeros((n, total), dtype=np.int32)
    y = np.zeros((n, total), dtype=np.int32)
    x[:, :seq_len] = symbols
    x[:, seq_len + delay - 1] = num_symbols + 1
    y[:, seq_len + delay :] = symbols
    return x, y


def copy_memory_baseline(seq_len: int, delay: int, num_symbols: int = 8) -> float:
    """Per-step cross-entropy (nats) of the best memoryless copy-memory predictor.

    It predicts blank with certainty until the output phase, then a uniform guess over the
    ``num_symbols`` symbols: ``seq_len * log(num_symbols) / (2 * seq_len + delay)``.
    """
    seq_len = _check_int("seq_len", seq_len, 1)
    delay = _check_int("delay", delay, 1)
    num_symbols = _check_int("num_symbols", num_symbols, 2)
    return seq_len * math.log(num_symbols) / (2 * seq_len + delay)


def as_dataset(x: np.ndarray, y: np.ndarray) -> gluon.data.ArrayDataset:
    """Wrap fixed-length arrays as ``(features, label, length)`` samples.

    Parameters
    ----------
    x : np.ndarray, (n, T, ...)
        Inputs; every sample has length ``T``.
    y : np.ndarray, (n, ...)
        Labels or targets.

    Returns
    -------
    gluon.data.ArrayDataset
        Items ``(x[i], y[i], T)`` with ``T`` as float32, ready for
        :func:`mxlstm.data.batchify.pad_batchify`.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2 or len(x) != len(y):
        raise ConfigError(f"x must be (n, T, ...) and y (n, ...): got {x.shape} and {y.shape}")
    lengths = np.full(len(x), x.shape[1], dtype=np.float32)
    return gluon.data.ArrayDataset(x, y, lengths)

"""Batching of variable-length sequences with GluonNLP, reproducible from a seed.

Samples are ``(features, label, length)`` tuples: ``features`` is ``(T_i, C)`` float32 or
``(T_i,)`` token ids. :func:`mxlstm.data.batchify.pad_batchify` pads them to the right,
:func:`make_loader` builds a :class:`SeededDataLoader` whose order depends only on
``(seed, epoch)``, and :func:`lm_batches` lays out a token-id stream for truncated BPTT.

Epochs and worker processes: with ``num_workers > 0`` the dataset lives in forked worker
processes, so calling ``dataset.set_epoch`` in the parent would not reach them. The
samplers here therefore yield :class:`EpochIndex` values -- ints that carry the epoch --
and :class:`mxlstm.data.augment.AugmentedDataset` reads the epoch from the index.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import mxnet as mx
import numpy as np
from gluonnlp.data import FixedBucketSampler
from mxnet import gluon

from mxlstm.data.batchify import pad_batchify
from mxlstm.errors import ConfigError, DataError

__all__ = [
    "EpochIndex",
    "SeededBucketSampler",
    "SeededDataLoader",
    "SeededSampler",
    "epoch_seed",
    "lm_batches",
    "make_loader",
    "to_context",
]


def epoch_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from ``seed`` and further integer keys (epoch, index, ...)."""
    if any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0
           for k in (seed, *keys)):
        raise ConfigError(f"seeds and epochs must be integers >= 0, got {(seed, *keys)}")
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


class EpochIndex(int):
    """A sample index that also carries the epoch it was drawn for (``.epoch``)."""

    epoch: int

    def __new__(cls, index: int, epoch: int) -> EpochIndex:
        obj = super().__new__(cls, index)
        obj.epoch = int(epoch)
        return obj

    def __reduce__(self) -> tuple:
        return (EpochIndex, (int(self), self.epoch))

    def __repr__(self) -> str:
        return f"EpochIndex({int(self)}, epoch={self.epoch})"


class _EpochMixin:
    """``set_epoch(e)`` chooses the next epoch; each iteration then advances it by one."""

    _next_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        epoch_seed(0, epoch)  # validates
        self._next_epoch = int(epoch)

    def _take_epoch(self) -> int:
        epoch = self._next_epoch
        self._next_epoch = epoch + 1
        return epoch


def to_context(batch: Any, ctx: mx.Context) -> Any:
    """Copy every NDArray in a (nested) batch to ``ctx``; other values pass through.

    DataLoader batches live on ``cpu_shared(0)``; a hybridized block needs its inputs on its
    own context. Tuples and lists keep their type; arrays already on ``ctx`` are not copied.
    """
    if isinstance(batch, mx.nd.NDArray):
        return batch.as_in_context(ctx)
    if isinstance(batch, tuple | list):
        return type(batch)(to_context(item, ctx) for item in batch)
    if isinstance(batch, dict):
        return {key: to_context(value, ctx) for key, value in batch.items()}
    return batch


class SeededSampler(_EpochMixin, gluon.data.Sampler):
    """Sample indices ``0..length-1``, shuffled by a RandomState seeded from (seed, epoch)."""

    def __init__(self, length: int, shuffle: bool, seed: int) -> None:
        self._length = int(length)
        self._shuffle = bool(shuffle)
        epoch_seed(seed)  # validates
        self._seed = int(seed)

    def __iter__(self) -> Iterator[EpochIndex]:
        epoch = self._take_epoch()
        order = np.arange(self._length)
        if self._shuffle:
            np.random.RandomState(epoch_seed(self._seed, epoch)).shuffle(order)
        return iter([EpochIndex(i, epoch) for i in order])

    def __len__(self) -> int:
        return self._length


class SeededBucketSampler(_EpochMixin, gluon.data.Sampler):
    """``FixedBucketSampler`` made reproducible from ``(seed, epoch)``.

    ``FixedBucketSampler`` shuffles with numpy's global RNG and in place, so its order
    depends on every earlier epoch. Each epoch here shuffles a fresh copy of the unshuffled
    sampler while the global RNG holds the state of ``RandomState(epoch_seed(seed,
    epoch))``; the caller's global RNG state is restored afterwards.
    ``last_batch='discard'`` drops batches smaller than ``batch_size``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_buckets: int,
        shuffle: bool,
        seed: int,
        last_batch: str = "keep",
    ) -> None:
        if last_batch not in ("keep", "discard"):
            raise ConfigError(f"with buckets last_batch must be keep or discard: {last_batch!r}")
        with warnings.catch_warnings():  # "Some buckets are empty": harmless
            warnings.simplefilter("ignore", UserWarning)
            self._sampler = FixedBucketSampler(
                list(lengths), batch_size, num_buckets=num_buckets, shuffle=shuffle
            )
        self._batch_size = batch_size
        epoch_seed(seed)  # validates
        self._seed = int(seed)
        self._discard = last_batch == "discard"
        self._len = len(self._draw(0))

    def _draw(self, epoch: int) -> list[list[int]]:
        sampler = copy.deepcopy(self._sampler)
        saved = np.random.get_state()
        try:
            np.random.set_state(np.random.RandomState(epoch_seed(self._seed, epoch)).get_state())
            batches = list(sampler)
        finally:
            np.random.set_state(saved)
        if self._discard:
            batches = [b for b in batches if len(b) == self._batch_size]
        return batches

    def __iter__(self) -> Iterator[list[EpochIndex]]:
        epoch = self._take_epoch()
        return iter([[EpochIndex(i, epoch) for i in b] for b in self._draw(epoch)])

    def __len__(self) -> int:
        return self._len

    def stats(self) -> str:
        """Bucket keys, counts and batch sizes (``FixedBucketSampler.stats``)."""
        return self._sampler.stats()


class SeededDataLoader(gluon.data.DataLoader):
    """A ``gluon.data.DataLoader`` with ``set_epoch``; see :func:`make_loader`."""

    def __init__(self, dataset: Any, batch_sampler: Any, epoch_sampler: _EpochMixin,
                 **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._epoch_sampler = epoch_sampler

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch`` (later iterations continue from it)."""
        self._epoch_sampler.set_epoch(epoch)


def make_loader(
    dataset: Any,
    batch_size: int,
    shuffle: bool,
    seed: int,
    lengths: Sequence[int] | np.ndarray | None = None,
    num_buckets: int | None = None,
    num_workers: int = 0,
    last_batch: str = "keep",
    batchify_fn: Any = None,
) -> SeededDataLoader:
    """Build a DataLoader whose batches depend only on ``(seed, epoch)``.

    Parameters
    ----------
    dataset : gluon.data.Dataset
        Samples ``(features, label, length)``.
    batch_size : int
        Samples per batch (buckets may give smaller batches at their ends).
    shuffle : bool
        Shuffle samples (and with buckets, batches and bucket contents) each epoch.
    seed : int
        Shuffling seed (>= 0). Epoch ``e`` of the same seed always gives the same order.
    lengths : sequence of int, optional
        Sample lengths; required with ``num_buckets``.
    num_buckets : int, optional
        Group similar lengths with ``gluonnlp.data.FixedBucketSampler`` (only when the
        lengths vary; equal lengths fall back to plain batching).
    num_workers : int, default 0
        Worker processes; their batches come back on ``cpu_shared(0)``.
    last_batch : {"keep", "discard", "rollover"}
        Handling of a short final batch ("rollover" only without buckets).
    batchify_fn : callable, optional
        Defaults to ``pad_batchify()``.

    Returns
    -------
    SeededDataLoader
        Iterating it runs epoch 0, 1, 2, ... unless ``loader.set_epoch(e)`` is called first.
        Sample indices are :class:`EpochIndex` values so per-epoch augmentation also works
        inside worker processes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if last_batch not in ("keep", "discard", "rollover"):
        raise ConfigError(f"last_batch must be keep, discard or rollover, got {last_batch!r}")
    epoch_seed(seed)
    if len(dataset) == 0:
        raise DataError("cannot build a loader for an empty dataset")
    batchify_fn = pad_batchify() if batchify_fn is None else batchify_fn
    sampler: Any
    if num_buckets is not None:
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
            raise ConfigError(f"num_buckets must be an integer >= 1, got {num_buckets!r}")
        if lengths is None:
            raise ConfigError("num_buckets needs the sample lengths (lengths=...)")
        lengths = np.asarray(lengths)
        if lengths.shape != (len(dataset),) or lengths.min() < 1:
            raise DataError(f"lengths must be {len(dataset)} values >= 1")
    if num_buckets is not None and lengths.min() != lengths.max():
        sampler = SeededBucketSampler(
            lengths.astype(int).tolist(), batch_size, num_buckets, shuffle, seed, last_batch
        )
        batch_sampler = sampler
    else:
        sampler = SeededSampler(len(dataset), shuffle, seed)
        batch_sampler = gluon.data.BatchSampler(sampler, batch_size, last_batch)
    return SeededDataLoader(
        dataset, batch_sampler, sampler, batchify_fn=batchify_fn, num_workers=num_workers
    )


def lm_batches(
    ids: Sequence[int] | np.ndarray,
    batch_size: int,
    bptt: int,
    layout: str = "TN",
    last_batch: str = "keep",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cut a token-id stream into truncated-BPTT language-model batches.

    ``gluonnlp.data.batchify.CorpusBPTTBatchify`` (0.10) takes a ``Vocab`` and a corpus of
    token *strings* and looks every token up again, so it cannot take ids. This implements
    the same layout on ids directly: the stream is cut into ``batch_size`` contiguous
    columns (the tail that does not fill a whole row is dropped) and each batch is the next
    ``bptt`` rows, the target the same rows shifted by one token. Column ``j`` continues in
    the next batch, so recurrent states can be carried over::

        ids = 0 1 2 3 4 5 6 7 8 9 10 11, batch_size=2, bptt=2, layout "TN":

        columns       batch 0           batch 1           batch 2
        0  6          data  target      data  target      data  target
        1  7          0  6  1  7        2  8  3  9        4 10  5 11
        2  8          1  7  2  8        3  9  4 10
        ...
        5 11

    With ``last_batch='discard'`` it equals CorpusBPTTBatchify's output (as int32).

    Parameters
    ----------
    ids : sequence of int, (L,)
        The token ids in reading order.
    batch_size : int
        Number of parallel streams ``N``.
    bptt : int
        Steps per batch ``T``.
    layout : {"TN", "NT"}, default "TN"
        "TN" gives ``(T, N)`` arrays (gluonnlp and the fused LSTM default), "NT" ``(N, T)``.
    last_batch : {"keep", "discard"}, default "keep"
        Keep a shorter final batch (``T' < bptt`` steps, never padded) or drop it.

    Yields
    ------
    data, target : np.ndarray, (T, N) or (N, T) int32
        Read-only views of one array; a new generator is needed for each epoch.
    """
    if layout not in ("TN", "NT"):
        raise ConfigError(f"layout must be 'TN' or 'NT', got {layout!r}")
    if last_batch not in ("keep", "discard"):
        raise ConfigError(f"last_batch must be 'keep' or 'discard', got {last_batch!r}")
    for name, value in (("batch_size", batch_size), ("bptt", bptt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    rows = len(ids) // batch_size
    if rows < 2:
        raise DataError(f"{len(ids)} ids are too few for batch_size {batch_size}")
    columns = ids[: rows * batch_size].astype(np.int32).reshape(batch_size, rows).T
    columns.flags.writeable = False
    return _iter_lm(columns, bptt, layout == "NT", last_batch == "discard")


def _iter_lm(
    columns: np.ndarray, bptt: int, transpose: bool, discard: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    rows = len(columns)
    for start in range(0, rows - 1, bptt):
        steps = min(bptt, rows - 1 - start)
        if discard and steps < bptt:
            return
        data = columns[start : start + steps]
        target = columns[start + 1 : start + 1 + steps]
        yield (data.T, target.T) if transpose else (data, target)

"""A series classifier / regressor with optional per-series z-normalisation and an
LSTM-FCN-style convolutional branch (Karim et al. 2017, "LSTM Fully Convolutional
Networks for Time Series Classification").

::

    x (N, T, C) --[SeriesZNorm]--+--> dropout --> RecurrentLayer --> pool --+
                                 |                                          +--> concat --> head
                                 +--> ConvBranch (conv 8/5/3, BN, ReLU, mean) +

The recurrent branch is the one of :class:`~mxlstm.models.SequenceModel` (same options,
same pooling); the convolutional branch is present when ``conv_filters`` is non-empty.
Unlike the paper, the recurrent branch reads the series step by step (no "dimension
shuffle"), so the model stays recurrent at its core.
"""

from __future__ import annotations

from typing import Any

import mxnet as mx
from mxnet.gluon import HybridBlock

from mxlstm.blocks.models import POOLINGS, dense_head, pool
from mxlstm.blocks.recurrent import RecurrentLayer
from mxlstm.blocks.regularize import LockedDropout
from mxlstm.blocks.series_blocks import ConvBranch, SeriesZNorm, step_mask
from mxlstm.errors import ConfigError


def average_steps(F, x, valid_length, stride: int):
    """``x (N, T, C)`` -> ``(N, ceil(T / stride), C)``: the mean of each window of
    ``stride`` steps (a sequence's last, partial window is averaged with zeros, as if it
    ran alone), and ``ceil(valid_length / stride)``. Steps past ``valid_length`` must be 0."""
    mask = F.swapaxes(step_mask(F, x, valid_length), 1, 2)  # (N, 1, T)
    h = F.broadcast_mul(F.swapaxes(x, 1, 2), mask)
    # a sum over each window, clipped at the array's end, then / stride: the same for a
    # padded batch and a sequence alone (an 'avg' pool divides by the clipped size)
    summed = F.Pooling(h, kernel=(stride,), stride=(stride,), pool_type="sum",
                       pooling_convention="full", layout="NCW")
    return F.swapaxes(summed / stride, 1, 2), F.ceil(valid_length / stride)


# what a window of k > 1 steps becomes: its mean, or its mean, max and min (3C channels)
WINDOW_STATS = ("mean", "meanmaxmin")
_BIG = 1e30  # finite, so that 0 * fill stays 0


def window_extremes(F, x, valid_length, stride: int):
    """``x (N, T, C)`` -> ``(max, min)``, each ``(N, ceil(T / stride), C)``: the extremes
    of each window of ``stride`` steps over its valid steps only (a sequence's last,
    partial window as if it ran alone), 0 past ``ceil(valid_length / stride)``."""
    mask = step_mask(F, x, valid_length)  # (N, T, 1)
    valid = F.broadcast_mul(x, mask)
    fill = (1 - mask) * _BIG  # padded steps never win a max or a min
    pooled = []
    for sign in (1.0, -1.0):  # min = -max(-x)
        h = F.swapaxes(F.broadcast_sub(valid * sign, fill), 1, 2)  # (N, C, T)
        top = F.Pooling(h, kernel=(stride,), stride=(stride,), pool_type="max",
                        pooling_convention="full", layout="NCW")
        pooled.append(F.swapaxes(top, 1, 2) * sign)
    steps = F.ceil(valid_length / stride)
    kept = step_mask(F, pooled[0], steps)
    return tuple(F.broadcast_mul(p, kept) for p in pooled)


def window_steps(F, x, valid_length, stride: int, stats: str = "mean"):
    """``x (N, T, C)`` -> ``(N, ceil(T / stride), C)`` window means
    (:func:`average_steps`), or with ``stats="meanmaxmin"`` ``(N, ceil(T / stride), 3C)``:
    means, maxima, minima (:func:`window_extremes`), so that short spikes survive; and
    ``ceil(valid_length / stride)``. ``stride == 1``: ``x`` and ``valid_length`` as they
    are (C channels)."""
    if stats not in WINDOW_STATS:
        raise ConfigError(f"window_stats must be one of {WINDOW_STATS}, got {stats!r}")
    if stride == 1:
        return x, valid_length
    mean, steps = average_steps(F, x, valid_length, stride)
    if stats == "mean":
        return mean, steps
    top, bottom = window_extremes(F, x, valid_length, stride)
    return F.concat(mean, top, bottom, dim=2), steps


def stride_for(length: int, max_steps: int) -> int:
    """The window of :func:`average_steps` that brings ``length`` steps to at most
    ``max_steps`` (1 when ``max_steps`` is 0 or not exceeded)."""
    if not max_steps or length <= max_steps:
        return 1
    return -(-int(length) // int(max_steps))


class SeriesModel(HybridBlock):
    """Numeric series in, ``(N, K)`` logits or values out.

    Parameters
    ----------
    num_outputs : int
        ``K``: classes or regression targets.
    series_norm : bool
        Z-normalise each series over its valid steps first (:class:`SeriesZNorm`).
    keep_level : bool
        With ``series_norm``: also feed each series' mean and log-std as channels.
    conv_filters : tuple of int
        Filters of the convolutional branch's layers; ``()`` = no branch.
    target : (mean, std) or None
        Regression: outputs are ``head * std + mean`` (the head learns standardised
        targets; constants of the graph).
    stride : int
        Average each window of ``stride`` steps first (:func:`average_steps`), so that long
        series cost less; 1 = off.
    conv_stride : int or None
        The same for the convolutional branch's input (None: ``stride``).
    fine_stride : int or None
        Multi-scale: a second convolutional branch (the same filters, its own weights)
        reads windows of ``fine_stride`` steps, its features beside the first's (None:
        no second branch).
    window_stats : str
        What a window of more than one step becomes (:func:`window_steps`): ``"mean"``, or
        ``"meanmaxmin"`` (3C channels; a branch reading every step keeps C).
    fixed_length : int or None
        Inference on rows that all hold ``T`` steps: the only input is ``x`` (the export
        form ``--fixed-length``; the encoder then runs without lengths).
    **encoder
        :class:`~mxlstm.recurrent.RecurrentLayer` options.

    Inputs (positional): ``x (N, T, C)``, ``valid_length (N,)`` (only ``x`` with
    ``fixed_length``).

    >>> import mxnet as mx
    >>> model = SeriesModel(3, hidden_size=4, series_norm=True, conv_filters=(5, 6))
    >>> model.initialize()
    >>> model(mx.nd.ones((2, 9, 1)), mx.nd.array([9, 4])).shape
    (2, 3)
    >>> model.variant(fixed_length=9)(mx.nd.ones((2, 9, 1))).shape
    (2, 3)
    """

    def __init__(self, num_outputs: int, hidden_size: int = 64, cell_type: str = "lstm",
                 series_norm: bool = False, conv_filters: tuple[int, ...] = (),
                 stride: int = 1, conv_stride: int | None = None,
                 window_stats: str = "mean", fine_stride: int | None = None,
                 target: tuple[float, float] | None = None,
                 keep_level: bool = False,
                 input_dropout: float = 0.0, pooling: str = "last",
                 head_units: tuple[int, ...] = (), head_dropout: float = 0.0,
                 fixed_length: int | None = None, prefix: str | None = None,
                 params: Any = None, **encoder: Any) -> None:
        super().__init__(prefix=prefix, params=params)
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self._options = {
            "num_outputs": num_outputs, "hidden_size": hidden_size, "cell_type": cell_type,
            "series_norm": series_norm, "conv_filters": tuple(conv_filters),
            "stride": stride, "conv_stride": conv_stride, "window_stats": window_stats,
            "fine_stride": fine_stride, "target": target,
            "keep_level": keep_level,
            "input_dropout": input_dropout, "pooling": pooling,
            "head_units": tuple(head_units), "head_dropout": head_dropout,
            "fixed_length": fixed_length, **encoder}
        self.pooling = pooling
        self.stride = int(stride)
        self.conv_stride = self.stride if conv_stride is None else int(conv_stride)
        if window_stats not in WINDOW_STATS:
            raise ConfigError(f"window_stats must be one of {WINDOW_STATS}, "
                              f"got {window_stats!r}")
        self.window_stats = window_stats
        self.fine_stride = None if fine_stride is None or not conv_filters \
            else int(fine_stride)
        self.fixed_length = fixed_length
        self.per_step = False
        self.embedding = None
        with self.name_scope():
            self.znorm = SeriesZNorm(keep_level=keep_level) if series_norm else None
            self.input_dropout = LockedDropout(input_dropout) if input_dropout else None
            self.encoder = RecurrentLayer(cell_type, hidden_size, **encoder)
            self.conv = ConvBranch(tuple(conv_filters)) if conv_filters else None
            self.conv_fine = ConvBranch(tuple(conv_filters)) \
                if self.fine_stride is not None else None
            self.head = dense_head(num_outputs, head_units, head_dropout)
            self.target_mean = self.target_std = None
            if target is not None:
                self.target_mean = self.params.get_constant(
                    "target_mean", mx.nd.array([float(target[0])]))
                self.target_std = self.params.get_constant(
                    "target_std", mx.nd.array([float(target[1])]))
        self.bidirectional = self.encoder.num_directions == 2

    def options(self) -> dict:
        """The constructor arguments (without ``prefix`` / ``params``)."""
        return dict(self._options)

    def variant(self, **changes: Any) -> SeriesModel:
        """This model rebuilt with ``changes`` to its options (``fixed_length=T``, encoder
        options) on the same Parameter objects."""
        return SeriesModel(**{**self.options(), **changes}, prefix=self.prefix,
                           params=self.collect_params())

    def streaming_refusal(self) -> str | None:
        """Why this model cannot run chunk by chunk: always, as each answer reads the
        whole series (its statistics, convolutions over later steps, or step windows)."""
        parts = [what for what, present in (
            ("per-series normalisation (statistics of the whole series)", self.znorm),
            ("a convolutional branch (its kernels read later steps; a mean over all steps)",
             self.conv), (f"windows of {self.stride} steps averaged", self.stride > 1),
            (f"windows of {self.conv_stride} steps for the convolutional branch",
             self.conv is not None and self.conv_stride not in (1, self.stride)),
            (f"a second convolutional branch (windows of {self.fine_stride} steps)",
             self.conv_fine is not None),
            ("a bidirectional encoder", self.bidirectional)) if present]
        return ("the series model reads the whole series at once"
                + (f": {'; '.join(parts)}" if parts else "")
                + "; export it with valid_length (the default)")

    def conv_branches(self) -> list[tuple[HybridBlock, int]]:
        """``(branch, stride)`` of each convolutional branch, coarse first."""
        return [(branch, stride) for branch, stride in (
            (self.conv, self.conv_stride), (self.conv_fine, self.fine_stride))
            if branch is not None]

    def branch_inputs(self, F, x, valid_length):
        """``((encoder input, lengths), [(x, lengths) per conv branch])``:
        ``x (N, T, C)`` z-normalised (if on), then summarised over windows of ``stride``
        steps for the encoder (``(N, ceil(T / stride), C')``, ``ceil(valid_length /
        stride)`` float) and of each convolutional branch's own stride
        (:meth:`conv_branches`, :meth:`windows`)."""
        valid_length = F.cast(valid_length, dtype="float32")
        if self.znorm is not None:
            x = self.znorm(x, valid_length)
        conv_in = [self.windows(F, x, valid_length, stride)  # each at its own resolution
                   for _, stride in self.conv_branches()]
        return self.windows(F, x, valid_length, self.stride), conv_in

    def windows(self, F, x, valid_length, stride: int):
        """:func:`window_steps` with this model's ``window_stats``."""
        return window_steps(F, x, valid_length, stride, self.window_stats)

    def encoder_input(self, F, x, valid_length):
        """The encoder's input and lengths (see :meth:`branch_inputs`)."""
        return self.branch_inputs(F, x, valid_length)[0]

    def load_parameters(self, filename, ctx=None, **kwargs) -> None:
        """Load saved parameters into fresh arrays: after an inference pass oneDNN keeps the
        convolution weights in its own layout, and MXNet 1.9.1 cannot copy into those
        ("Check failed: to.IsDefaultData()")."""
        for param in self.collect_params().values():
            if param._data is not None:
                first = param._data[0]
                param._init_impl(mx.nd.zeros(first.shape, dtype=first.dtype),
                                 param.list_ctx())
        super().load_parameters(filename, ctx=ctx, **kwargs)

    def hybrid_forward(self, F, x, *rest, target_mean=None, target_std=None):
        if self.fixed_length:  # every row holds T steps: lengths built from x's shape
            valid_length = F.sum(F.ones_like(F.slice_axis(x, axis=2, begin=0, end=1)),
                                 axis=(1, 2))
        else:
            valid_length = rest[0]
        (x, valid_length), conv_in = self.branch_inputs(F, x, valid_length)
        h = self.input_dropout(x) if self.input_dropout is not None else x
        if self.fixed_length:  # every window is full: the encoder's path without lengths
            steps = -(-int(self.fixed_length) // self.stride)
            out = self.encoder(h, None)
            features = pool(F, out, None, self.pooling, self.bidirectional,
                            self.encoder.hidden_size, steps)
        else:
            out = self.encoder(h, valid_length)
            features = pool(F, out, valid_length, self.pooling, self.bidirectional,
                            self.encoder.hidden_size)
        for (branch, _), inputs in zip(self.conv_branches(), conv_in):
            features = F.concat(features, branch(*inputs), dim=1)
        out = self.head(features)
        if target_mean is not None:
            out = F.broadcast_add(F.broadcast_mul(out, target_std), target_mean)
        return out

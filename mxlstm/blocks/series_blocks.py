"""Blocks for numeric series models: per-series z-normalisation and a convolutional branch.

Both take right-padded input ``x (N, T, C)`` with ``valid_length (N,)`` and give each
sequence the answer it would get alone: statistics use valid steps only, and every
convolution's input is zero past a sequence's end (what ``'same'`` zero padding of the
sequence alone would see). Batch normalisation uses batch statistics while training, so
only inference is exactly padding-independent.
"""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from mxlstm.blocks._sequence import length_mask

# Karim et al. (2017), LSTM-FCN: three temporal convolutions of kernel 8, 5, 3.
KERNELS = (8, 5, 3)


def step_mask(F, x, valid_length):
    """``(N, T, 1)`` float mask of the valid steps of ``x (N, T, C)``."""
    mask = length_mask(F, F.swapaxes(x, 0, 1), valid_length)  # (T, N)
    return F.expand_dims(F.swapaxes(mask, 0, 1), axis=2)


class SeriesZNorm(HybridBlock):
    """Z-normalise each series per channel over its own valid steps.

    Inputs: ``x (N, T, C)``, ``valid_length (N,)`` float. Output ``(N, T, C)``: valid steps
    ``(x - mean) / max(std, eps)``, padded steps 0. Invariant to a per-channel affine map
    of the input with positive scale, so it commutes with the training-split
    normalisation applied before it. With ``keep_level`` the output is ``(N, T, 3C)``:
    the z-normalised series, then each series' own mean and ``log(std + eps)`` repeated at
    every valid step, so that a level that tells classes apart (the power drawn by an
    appliance) is not lost.
    """

    def __init__(self, eps: float = 1e-5, keep_level: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.keep_level = keep_level

    def hybrid_forward(self, F, x, valid_length):
        mask = step_mask(F, x, valid_length)
        count = F.reshape(valid_length, shape=(-1, 1, 1))
        mean = F.broadcast_div(F.sum(F.broadcast_mul(x, mask), axis=1, keepdims=True), count)
        centred = F.broadcast_mul(F.broadcast_sub(x, mean), mask)
        var = F.broadcast_div(F.sum(centred * centred, axis=1, keepdims=True), count)
        std = F.sqrt(var)
        z = F.broadcast_div(centred, F.maximum(std, self.eps))
        if not self.keep_level:
            return z
        level = F.broadcast_mul(F.broadcast_like(mean, x), mask)
        spread = F.broadcast_mul(F.broadcast_like(F.log(std + self.eps), x), mask)
        return F.concat(z, level, spread, dim=2)


class ConvBranch(HybridBlock):
    """The FCN branch of LSTM-FCN: ``Conv1D -> BatchNorm -> ReLU`` per entry of
    ``filters`` (kernels 8, 5, 3, then 3), then a global average over valid steps.

    Inputs: ``x (N, T, C)``, ``valid_length (N,)`` float. Output ``(N, filters[-1])``.
    """

    def __init__(self, filters: tuple[int, ...] = (128, 256, 128)) -> None:
        super().__init__()
        self.filters = tuple(filters)
        self.output_size = self.filters[-1]
        with self.name_scope():
            self.layers = nn.HybridSequential()
            for k, units in enumerate(self.filters):
                kernel = KERNELS[k] if k < len(KERNELS) else KERNELS[-1]
                with self.layers.name_scope():
                    conv = nn.Conv1D(units, kernel, padding=kernel // 2, layout="NCW",
                                     use_bias=False)
                    self.layers.add(conv, nn.BatchNorm(axis=1), nn.Activation("relu"))

    def hybrid_forward(self, F, x, valid_length):
        mask = F.swapaxes(step_mask(F, x, valid_length), 1, 2)  # (N, 1, T)
        spread = {}  # the mask at each layer width, built once per width

        def masked(h, width):
            # h (N, width, T) * the mask spread to h's shape, out of the gradient: the
            # backward of a broadcast multiply also sums ograd * h over the channels for
            # the mask, which took 35% of an ACSF1 training step (docs/benchmarks.md)
            if width not in spread:
                spread[width] = F.BlockGrad(F.broadcast_like(mask, h))
            return F.elemwise_mul(h, spread[width])

        h = masked(F.swapaxes(x, 1, 2), "input")  # (N, C, T)
        for k in range(0, len(self.layers), 3):
            conv, norm, act = self.layers[k], self.layers[k + 1], self.layers[k + 2]
            out = conv(h)
            # even kernels pad one step more on the right than 'same' needs: keep T steps
            out = F.slice_like(out, h, axes=(2,))
            h = masked(act(norm(out)), self.filters[k // 3])
        total = F.sum(h, axis=2)
        return F.broadcast_div(total, F.reshape(valid_length, shape=(-1, 1)))

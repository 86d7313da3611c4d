"""The ONNX stages of the series model (LSTM-FCN), written from a trained
:class:`~mxlstm.blocks.series_model.SeriesModel`'s weights for
:func:`mxlstm.deploy.onnx_graph.build_onnx`.

::

    data (N, T, C), lengths (N,)
      -> [z-norm: masked mean / std per series and channel (+ level, log-std channels)]
      -> [window average: AveragePool of s steps over (N, C, T), zeros past the end
          (window_stats=meanmaxmin: beside it MaxPool of x and of -x, padding at -/+1e30);
          lengths -> ceil(lengths / s); the conv branch with its own s (conv_stride), a
          second, finer one with its own (fine_stride, multi-scale)]
      -> recurrent encoder + pooling (onnx_graph)       -+
      -> [conv branch(es): (Conv with the BatchNorm  -+-> Concat -> head [-> * std + mean]
          folded in -> Relu -> * mask) per layer, masked mean over T]

Every stage keeps the padded steps at zero as mxlstm does, so garbage in the padding
never reaches an answer. An even kernel ``k`` is padded ``(k/2, k/2 - 1)``: the first
``T`` outputs of MXNet's symmetric ``k/2`` padding, which mxlstm keeps.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto


def _numpy(param) -> np.ndarray:
    return param.data().asnumpy().astype(np.float32)


def _float_mask(g, x: str, lengths_f: str) -> str:
    """Float ``(N, T, 1)``: 1 at the valid steps of ``x (N, T, F)``."""
    from mxlstm.deploy.onnx_graph import _mask

    return g.op("Cast", [_mask(g, x, lengths_f)], to=TensorProto.FLOAT)


def _axis(g, value: int) -> str:
    return g.const("axis", [value], np.int64)


def znorm(g, x: str, lengths_f: str, block) -> str:
    """:class:`~mxlstm.blocks.series_blocks.SeriesZNorm` of ``x (N, T, C)``:
    ``(N, T, C)``, or ``(N, T, 3C)`` with ``keep_level``."""
    mask = _float_mask(g, x, lengths_f)
    count = g.op("Reshape", [lengths_f, g.const("shape", [-1, 1, 1], np.int64)])
    total = g.op("ReduceSum", [g.op("Mul", [x, mask]), _axis(g, 1)], keepdims=1)
    mean = g.op("Div", [total, count])
    centred = g.op("Mul", [g.op("Sub", [x, mean]), mask])
    squares = g.op("ReduceSum", [g.op("Mul", [centred, centred]), _axis(g, 1)], keepdims=1)
    std = g.op("Sqrt", [g.op("Div", [squares, count])])
    z = g.op("Div", [centred, g.op("Max", [std, g.const("eps", block.eps)])])
    if not block.keep_level:
        return z
    level = g.op("Mul", [mean, mask])
    spread = g.op("Mul", [g.op("Log", [g.op("Add", [std, g.const("eps", block.eps)])]), mask])
    return g.op("Concat", [z, level, spread], axis=2)


def average_steps(g, x: str, lengths_f: str, stride: int) -> tuple[str, str]:
    """:func:`~mxlstm.blocks.series_model.average_steps`: ``x (N, T, C)`` ->
    ``(N, ceil(T / stride), C)`` and ``ceil(lengths / stride)``. An ``AveragePool`` of
    ``stride`` steps, zeros counted past the end (MXNet's sum over the clipped window,
    divided by ``stride``)."""
    masked = g.op("Mul", [x, _float_mask(g, x, lengths_f)])
    by_channel = g.op("Transpose", [masked], perm=[0, 2, 1])  # (N, C, T)
    pooled = g.op("AveragePool", [by_channel], kernel_shape=[stride], strides=[stride],
                  pads=[0, stride - 1], count_include_pad=1)
    out = g.op("Transpose", [pooled], perm=[0, 2, 1])
    steps = g.op("Ceil", [g.op("Div", [lengths_f, g.const("stride", float(stride))])])
    return out, steps


def window_extremes(g, x: str, lengths_f: str, stride: int) -> tuple[str, str]:
    """:func:`~mxlstm.blocks.series_model.window_extremes`: the max and the min of each
    window of ``stride`` steps of ``x (N, T, C)`` over its valid steps (padded steps
    pushed to -/+1e30, a ``MaxPool`` whose end padding never wins), 0 past the new
    lengths."""
    from mxlstm.blocks.series_model import _BIG

    mask = _float_mask(g, x, lengths_f)
    valid = g.op("Mul", [x, mask])
    fill = g.op("Mul", [g.op("Sub", [g.const("one_f", 1.0), mask]), g.const("big", _BIG)])
    steps = g.op("Ceil", [g.op("Div", [lengths_f, g.const("stride", float(stride))])])
    out = []
    for low in (False, True):  # min = -max(-x)
        h = g.op("Neg", [g.op("Add", [valid, fill])]) if low else g.op("Sub", [valid, fill])
        pooled = g.op("MaxPool", [g.op("Transpose", [h], perm=[0, 2, 1])],
                      kernel_shape=[stride], strides=[stride], pads=[0, stride - 1])
        top = g.op("Transpose", [pooled], perm=[0, 2, 1])
        top = g.op("Neg", [top]) if low else top
        out.append(g.op("Mul", [top, _float_mask(g, top, steps)]))
    return out[0], out[1]


def windows(g, model, x: str, lengths_f: str, stride: int) -> tuple[str, str]:
    """:meth:`SeriesModel.windows`: ``x`` and ``lengths_f`` at windows of ``stride``
    steps (as they are for 1): means, or means, maxima and minima (``window_stats``)."""
    if stride == 1:
        return x, lengths_f
    mean, steps = average_steps(g, x, lengths_f, stride)
    if model.window_stats == "mean":
        return mean, steps
    top, bottom = window_extremes(g, x, lengths_f, stride)
    return g.op("Concat", [mean, top, bottom], axis=2), steps


def _fold_batch_norm(weight: np.ndarray, norm) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm after a bias-free convolution folded into its weights:
    ``W * a`` and ``beta - mean * a``, ``a = gamma / sqrt(var + eps)`` per channel (one
    ``Conv`` node, whose weights int8 quantizes per output channel)."""
    kwargs = norm._kwargs
    if kwargs.get("axis", 1) != 1:
        raise ValueError("a BatchNorm over another axis than the channels is not exported")
    gamma = np.ones(norm.gamma.shape, np.float32) if kwargs.get("fix_gamma") \
        else _numpy(norm.gamma)
    scale = gamma / np.sqrt(_numpy(norm.running_var) + np.float32(kwargs["eps"]))
    bias = _numpy(norm.beta) - _numpy(norm.running_mean) * scale
    return (weight * scale[:, None, None]).astype(np.float32), bias.astype(np.float32)


def conv_branch(g, x: str, lengths_f: str, branch) -> str:
    """:class:`~mxlstm.blocks.series_blocks.ConvBranch` of ``x (N, T, C)``:
    ``(N, filters[-1])``, the mean of the last layer over each row's valid steps."""
    mask = g.op("Transpose", [_float_mask(g, x, lengths_f)], perm=[0, 2, 1])  # (N, 1, T)
    h = g.op("Mul", [g.op("Transpose", [x], perm=[0, 2, 1]), mask])  # (N, C, T)
    layers = list(branch.layers._children.values())
    for k in range(0, len(layers), 3):
        conv, norm, act = layers[k:k + 3]
        kernel = int(conv._kwargs["kernel"][0])
        if conv.bias is not None or conv.act is not None or act._act_type != "relu":
            raise ValueError("the convolutional branch is not Conv1D (no bias) -> BatchNorm "
                             "-> ReLU")
        if tuple(conv._kwargs["stride"]) != (1,) or tuple(conv._kwargs["dilate"]) != (1,) \
                or conv._kwargs["num_group"] != 1:
            raise ValueError("a strided, dilated or grouped convolution is not exported")
        weight, bias = _fold_batch_norm(_numpy(conv.weight), norm)
        left = kernel // 2
        y = g.op("Conv", [h, g.const("conv_W", weight), g.const("conv_b", bias)],
                 kernel_shape=[kernel], pads=[left, left - (1 - kernel % 2)], strides=[1],
                 dilations=[1], group=1)
        h = g.op("Mul", [g.op("Relu", [y]), mask])
    total = g.op("ReduceSum", [h, _axis(g, 2)], keepdims=0)
    return g.op("Div", [total, g.op("Unsqueeze", [lengths_f, _axis(g, 1)])])


def full_lengths(g, x: str, to: int) -> str:
    """``(N,)`` of type ``to`` holding ``T`` for every row of ``x (N, T, C)``
    (fixed-length graphs)."""
    shape = g.op("Shape", [x])
    t = g.op("Cast", [g.op("Gather", [shape, g.const("one", 1, np.int64)], axis=0)], to=to)
    n = g.op("Slice", [shape, g.const("start", [0], np.int64), g.const("end", [1], np.int64)])
    return g.op("Expand", [t, n])


def stages(model) -> list[str]:
    """What the series graph holds besides the recurrent ops (for ``meta.json``)."""
    out = []
    if model.znorm is not None:
        out.append("per-series z-normalisation" + (" with level channels"
                                                  if model.znorm.keep_level else ""))
    stats = "averaged" if model.window_stats == "mean" else "as mean, max and min"
    if model.stride > 1:
        out.append(f"windows of {model.stride} steps {stats}")
    if model.conv is not None and model.conv_stride != model.stride:
        out.append("the convolutional branch reads every step" if model.conv_stride == 1
                   else f"windows of {model.conv_stride} steps {stats} for the "
                   "convolutional branch")
    if model.conv_fine is not None:
        out.append("a second convolutional branch reads every step" if model.fine_stride == 1
                   else f"a second convolutional branch reads windows of "
                   f"{model.fine_stride} steps {stats}")
    for branch, _ in model.conv_branches():
        out.append(f"{len(branch.filters)} x Conv (BatchNorm folded in)/Relu "
                   f"{list(branch.filters)}, masked mean")
    if model.target_mean is not None:
        out.append("target de-standardised")
    return out


def series_input(g, model, x: str, lengths_f: str | None, lengths: str | None
                 ) -> tuple[str, str, str, list[tuple[str, str]]]:
    """The encoder's input ``(N, T', C')``, float lengths and int32 lengths, and each conv
    branch's input with its float lengths (:meth:`SeriesModel.conv_branches`), as
    :meth:`SeriesModel.branch_inputs`; ``lengths_f = lengths = None`` in a fixed-length
    graph (every row holds ``T`` steps).

    The int32 lengths of the recurrent ops are computed from the int32 input lengths in
    integer arithmetic, never cast from a float intermediate: ONNX Runtime 1.15.1 may
    run a float -> int32 Cast in place (same size) over a value that a later node still
    reads, which gave garbage answers for some batch sequences."""
    if lengths_f is None:
        lengths_f = full_lengths(g, x, TensorProto.FLOAT)
        lengths = full_lengths(g, x, TensorProto.INT32)
    if model.znorm is not None:
        x = znorm(g, x, lengths_f, model.znorm)
    full = (x, lengths_f)
    if model.stride > 1:
        x, lengths_f = windows(g, model, x, lengths_f, model.stride)
        lengths = g.op("Div", [g.op("Add", [lengths, g.const("round_up", model.stride - 1,
                                                             np.int32)]),
                               g.const("stride", model.stride, np.int32)])  # ceil(L / s)
    conv = []
    for _, stride in model.conv_branches():  # each at its own resolution: the encoder's
        conv.append((x, lengths_f) if stride == model.stride  # (shared) or its own
                    else windows(g, model, *full, stride))
    return x, lengths_f, lengths, conv


def series_output(g, model, conv: list[tuple[str, str]], pooled: str, head) -> str:
    """The head on the pooled encoder output beside each conv branch of its input
    ``(x, lengths)`` in ``conv``, then de-standardised regression targets: ``(N, K)``."""
    for (branch, _), inputs in zip(model.conv_branches(), conv):
        pooled = g.op("Concat", [pooled, conv_branch(g, *inputs, branch)], axis=1)
    out = head(g, pooled, model.head)
    if model.target_mean is not None:
        out = g.op("Add", [g.op("Mul", [out, g.const("target_std", _numpy(model.target_std))]),
                           g.const("target_mean", _numpy(model.target_mean))])
    return out

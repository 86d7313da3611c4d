"""Run a :class:`mxlstm.recurrent.RecurrentLayer` on the kernel's ``mxlstm_rnn`` operator.

One operator call per layer (both directions inside), dropout between layers, on the
layer's own parameters (``l0_i2h_weight``, ``r0_h2h_bias``, ...; weight drop applies to
``h2h_weight`` as on the fused path). Variable lengths are exact inside the operator:
outputs past a sequence's end are 0 and the final states are those of its last valid step.
"""

from __future__ import annotations

import os

import numpy as np

from mxlstm import kernels
from mxlstm.blocks._sequence import zeros_like_state
from mxlstm.blocks.regularize import drop_weights


def unusable_reason(layer) -> str | None:
    """Why the kernel cannot run ``layer`` (the fused operator is exact for it), or None."""
    reason = kernels.status()
    if reason:
        return reason
    if mx_gpus() > 0:
        return "the kernel is CPU-only and this process sees a GPU"
    for param in layer._reg_params.values():
        if np.dtype(param.dtype) != np.float32:
            return f"parameters are {np.dtype(param.dtype)}, the kernel is float32 only"
        if param.grad_req == "add":  # read when the graph is built, like every reason here
            return ("gradient accumulation (grad_req='add'): MXNet's extension API does not "
                    "tell the kernel to add to a gradient")
    return None


def describe(layer) -> str:
    """Which operator the fused path runs for ``layer``, for the INFO line."""
    reason = unusable_reason(layer)
    if reason is None:
        return f"mxlstm CPU kernel, {kernels.library()}"
    return f"MXNet RNN operator; mxlstm kernel not used: {reason}"


def mx_gpus() -> int:
    import mxnet as mx

    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:
        return 0


def gemm_choice() -> str:
    """The kernel's ``gemm`` attribute, from ``MXLSTM_KERNEL_GEMM`` (read when a graph is
    built): ``auto`` (default: packed AVX2 products where they measured faster), ``blas``
    or ``packed`` (every product one way; for benchmarks and tests). An unknown value
    raises :class:`mxlstm.errors.ConfigError`."""
    kernels.check_switches()
    return os.environ.get("MXLSTM_KERNEL_GEMM", "auto")


def run(layer, F, x, valid_length, states, params):
    """``x (T, N, C)`` -> ``(out (T, N, D*H), final states, each (L*D, N, H))``."""
    cell = layer._table.cells[0]
    num_states = len(cell.state_info())
    dirs = layer.directions
    per_layer = len(dirs)
    hidden = layer.hidden_size
    op = getattr(F, kernels.OP_NAME)
    if states is None:
        zero = F.expand_dims(zeros_like_state(F, x, hidden), axis=0)
        zero = F.broadcast_axis(zero, axis=0, size=per_layer) if per_layer > 1 else zero
        layer_states = [[zero] * num_states for _ in range(layer.num_layers)]
    else:
        layer_states = [[F.slice_axis(s, axis=0, begin=i * per_layer,
                                      end=(i + 1) * per_layer) for s in states]
                        for i in range(layer.num_layers)]
    finals: list[list] = [[] for _ in range(num_states)]
    layer_in = x
    for index in range(layer.num_layers):
        weights = []
        for d in dirs:
            key = f"{d}{index}"
            weights += [params[f"{key}_i2h_weight"],
                        drop_weights(F, params[f"{key}_h2h_weight"], layer.weight_dropout),
                        params[f"{key}_i2h_bias"], params[f"{key}_h2h_bias"]]
        extra = [valid_length] if valid_length is not None else []
        outs = op(layer_in, *weights, *layer_states[index], *extra, mode=cell.mode,
                  state_size=hidden, bidirectional=int(per_layer == 2),
                  use_lengths=int(valid_length is not None), gemm=gemm_choice())
        layer_in = outs[0]
        for k in range(num_states):
            finals[k].append(outs[1 + k])
        if layer.dropout and index < layer.num_layers - 1:
            layer_in = F.Dropout(layer_in, p=layer.dropout)
    return layer_in, [f[0] if len(f) == 1 else F.concat(*f, dim=0) for f in finals]

"""Softmax negative log-likelihood on the kernel's fused ``mxlstm_softmax_nll`` operator.

``log_softmax`` + ``pick`` in MXNet 1.9 backpropagates a dense gradient through ``pick``
and then through ``log_softmax``: 223 ms of a 1,120 x 10,000 LM step (fwd + bwd, one
thread) against 36 ms fused (``python -m mxlstm.bench.nll_ab``). The fused operator
computes the same loss (``logsumexp(x) - x[label]``, labels truncated and clipped to
``[0, K)`` as ``pick`` does) and the gradient ``softmax(x) - onehot(label)`` in one pass
over each row.
"""

from __future__ import annotations

import numpy as np

from mxlstm import kernels


def fused_nll_usable(F, logits) -> bool:
    """The fused operator is built and can take ``logits`` (float32 on the CPU)."""
    if kernels.status() is not None:
        return False
    from mxlstm.kernels.layer import mx_gpus

    if getattr(F, "__name__", "").endswith("ndarray"):
        return logits.context.device_type == "cpu" and logits.dtype == np.float32
    return mx_gpus() == 0  # a symbol: its context and dtype are unknown until bound


def softmax_nll(F, logits, labels):
    """``-log softmax(logits)[label]`` over the last axis: logits ``(..., K)``, labels
    ``(...)`` (class indices) -> ``(...)``. ``F`` is ``mx.nd`` or ``mx.sym``."""
    if fused_nll_usable(F, logits):
        if not getattr(F, "__name__", "").endswith("ndarray"):
            labels = F.cast(labels, dtype="float32")  # the operator takes float32 labels
        elif labels.dtype != np.float32:
            labels = labels.astype(np.float32)
        return getattr(F, kernels.NLL_OP_NAME)(logits, labels)
    return -F.pick(F.log_softmax(logits, axis=-1), labels, axis=-1)

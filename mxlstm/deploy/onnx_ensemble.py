"""A seed ensemble (:class:`~mxlstm.ensemble.EnsembleModel`) as one ONNX graph.

::

    data, lengths --+--> [x * scale_k + shift_k | ids_k[x]] --> member k --> [Softmax] --+
                    +--> ... (K members, each :func:`mxlstm.deploy.onnx_graph.model_body`) +
                                                                         mean over k <---+
                                        classifiers: Log(Max(mean, 1e-30)); regressors: mean

Each member's nodes are written from its own weights, so the graph runs the K members
in one session call, as the MXNet export does.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto


def _constant(model, name: str) -> np.ndarray:
    return getattr(model, name).data().asnumpy().astype(np.float32)


def ensemble_body(g, model, kind: str, x: str, dtype: str, lengths_f: str | None,
                  lengths: str | None) -> tuple[str, list]:
    """``(main output, [])`` of ``model``'s members averaged (no states to check)."""
    from mxlstm.deploy.onnx_graph import model_body

    outs = []
    for k, member in enumerate(model._members):
        xk, member_dtype = x, dtype
        if model._affine[k] is not None:
            scale, shift = (_constant(model, name) for name in model._affine[k])
            xk = g.op("Add", [g.op("Mul", [xk, g.const("scale", scale)]),
                              g.const("shift", shift)])
        if model._id_map[k] is not None:
            ids = g.op("Cast", [xk], to=TensorProto.INT64)
            mapped = g.op("Gather", [g.const("ids", _constant(model, model._id_map[k])), ids],
                          axis=0)
            xk, member_dtype = g.op("Cast", [mapped], to=TensorProto.INT32), "int32"
        out, _ = model_body(g, member, kind, False, xk, member_dtype, lengths_f, lengths, [])
        outs.append(g.op("Softmax", [out], axis=-1) if model.classify else out)
    total = outs[0] if len(outs) == 1 else g.op("Sum", outs)
    mean = g.op("Div", [total, g.const("members", float(len(outs)))])
    if model.classify:
        mean = g.op("Log", [g.op("Max", [mean, g.const("floor", 1e-30)])])
    return mean, []


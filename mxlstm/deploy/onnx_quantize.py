"""int8 ONNX by ONNX Runtime's quantization tools.

:func:`quantize` stores the weights of the recurrent and dense layers as int8 by dynamic
quantization (``DynamicQuantizeLSTM``, ``MatMulInteger`` / ``DynamicQuantizeMatMul``):
activations are quantized per call, so no calibration data is needed. GRU and RNN nodes
have no quantized kernel and stay fp32 (only their heads' products are quantized).

The series model's convolutions (73% of its fp32 time) are quantized **statically** when
calibration batches are given (:mod:`mxlstm.deploy.onnx_calibrate`: training samples):
``QLinearConv`` in QOperator form with per-channel int8 weights (the folded batch norm
gives each output channel its own range) and uint8 activations whose ranges (MinMax) come
from the calibration batches; the ReLU after each convolution is absorbed by its output
range. ONNX Runtime runs it with MLAS' integer kernels, faster than its fp32 ``Conv``
(docs/benchmarks.md). Without calibration batches the convolutions stay fp32.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

QUANTIZED_OPS = ("LSTM", "MatMul", "Gather")
STATIC_OPS = ("Conv", "Relu")
INT8_OPS = ("DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearConv")


def _quantize_conv(fp32: Path, out: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """``fp32`` with its ``Conv`` + ``Relu`` nodes statically quantized, into ``out``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mxlstm.deploy.onnx_calibrate import reader

    names = [i.name for i in onnx.load(str(fp32)).graph.input]
    quantize_static(str(fp32), str(out), reader(batches, names),
                    quant_format=QuantFormat.QOperator, op_types_to_quantize=list(STATIC_OPS),
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def has_conv(fp32: Path) -> bool:
    """Whether the graph at ``fp32`` has ``Conv`` nodes (then calibration batches help)."""
    import onnx

    return any(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)


def quantize(fp32: Path, int8: Path, calibration: list[dict[str, np.ndarray]] | None = None
             ) -> dict[str, int]:
    """Write the int8 model of ``fp32`` to ``int8``; returns ``{op type: count}`` of the
    quantized graph's ops that run on int8 weights. ``calibration``: input batches for the
    static quantization of convolutions (give them only for graphs with ``Conv`` nodes,
    :func:`has_conv`; see the module doc)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = fp32
    if calibration:  # first: the LSTM pass leaves attributes that a later one rejects
        source = int8.with_name(int8.name + ".conv.tmp")
        _quantize_conv(fp32, source, calibration)
    try:
        quantize_dynamic(str(source), str(int8), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS))
    finally:
        if source != fp32:
            source.unlink(missing_ok=True)
    model = onnx.load(str(int8))
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            # the quantizer copies the LSTM's attributes with onnx's defaults, including
            # opset 14's 'layout', which the contrib op does not declare (0 is its behaviour)
            kept = [a for a in node.attribute if a.name != "layout"]
            del node.attribute[:]
            node.attribute.extend(kept)
    # shape hints come out in an order that varies between processes (hash seeds): sorted,
    # the same run and calibration batches always give the same file
    hints = sorted(model.graph.value_info, key=lambda v: v.name)
    del model.graph.value_info[:]
    model.graph.value_info.extend(hints)
    onnx.save(model, str(int8))
    ops = Counter(n.op_type for n in model.graph.node if n.op_type in INT8_OPS or
                  (n.op_type == "Gather" and any(i.endswith("_quantized") for i in n.input)))
    return dict(sorted(ops.items()))

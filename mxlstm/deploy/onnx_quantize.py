"""int8 ONNX by ONNX Runtime's dynamic quantization.

:func:`quantize` stores the weights of the recurrent and dense layers as int8
(``DynamicQuantizeLSTM``, ``MatMulInteger`` / ``DynamicQuantizeMatMul``); activations are
quantized per call, so no calibration data is needed. GRU and RNN nodes have no quantized
kernel and stay fp32 (only their heads' products are quantized). The series model's
``Conv`` nodes stay fp32 unless asked (``conv=True``; see :func:`quantize`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

QUANTIZED_OPS = ("LSTM", "MatMul", "Gather")


def quantize(fp32: Path, int8: Path, conv: bool = False) -> dict[str, int]:
    """Write the int8 model of ``fp32`` to ``int8``; returns ``{op type: count}`` of the
    quantized graph's ops that run on int8 weights. ``conv``: also the series model's
    convolutions (``ConvInteger``; ONNX Runtime 1.15 runs it with uint8 weights only, and
    slower than its fp32 ``Conv``: smaller files, not faster ones)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = fp32
    if conv:  # first, as the LSTM pass leaves attributes that a second pass rejects
        source = int8.with_name(int8.name + ".conv.tmp")
        quantize_dynamic(str(fp32), str(source), weight_type=QuantType.QUInt8,
                         op_types_to_quantize=["Conv"])
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
    onnx.save(model, str(int8))
    ops = Counter(n.op_type for n in model.graph.node
                  if n.op_type in ("DynamicQuantizeLSTM", "MatMulInteger",
                                   "DynamicQuantizeMatMul", "ConvInteger") or
                  (n.op_type == "Gather" and any(i.endswith("_quantized") for i in n.input)))
    return dict(sorted(ops.items()))

"""ONNX for the exports where the conversion is exact, verified in onnxruntime.

``export_onnx(PREFIX)`` converts ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` with MXNet's
mx2onnx at a pinned opset 13 (mx2onnx otherwise declares onnx's newest opset over
old-style nodes), then runs both on two random batches and keeps the file only when every
output (matched by name: onnxruntime does not keep the order) is within 1e-5.

Refused, with the reason (see :func:`onnx_refusal`): graphs with sequence-length inputs
(all variable-length classifiers: export them with ``--streaming`` instead), the
gate-level cells path (``contrib.foreach``), ``SequenceLast``, fused multi-layer or
bidirectional multi-layer RNN ops and LSTM projections. Converts: streaming graphs and
language models whose layers run one fused op each.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np

from mxlstm.deploy.export import TOLERANCE, files_of, flat, import_block
from mxlstm.errors import ModelFileError, MxlstmError

ONNX_OPSET = 13
ONNX_INSTALL = ("pip install onnx==1.14.1 && pip install --no-deps onnxruntime==1.15.1 "
                "coloredlogs flatbuffers sympy packaging")


def onnx_refusal(meta: dict, graph: dict) -> str | None:
    """Why an export cannot go to ONNX (known wrong or failing conversions), or None."""
    if meta["input"]["lengths"]:
        return ("the graph takes sequence lengths (valid_length); mx2onnx cannot convert "
                "length-aware ops (SequenceReverse / masks with lengths). Export with "
                "--streaming (unidirectional, pooling 'last') for an ONNX-able graph")
    ops = {node["op"] for node in graph["nodes"]}
    if "_foreach" in ops:
        return "the graph runs the gate-level cells path (contrib.foreach), which has no " \
               "ONNX conversion"
    if "SequenceLast" in ops:
        return "SequenceLast does not convert to ONNX"
    for node in graph["nodes"]:
        if node["op"] != "RNN":
            continue
        attrs = node.get("attrs", {})
        layers = int(attrs.get("num_layers", 1))
        if attrs.get("bidirectional", "False") == "True" and layers > 1:
            return "bidirectional multi-layer RNN ops are not exportable to ONNX"
        if layers > 1:
            return "a fused multi-layer RNN op fails in onnxruntime (stack 1-layer ones)"
        if attrs.get("projection_size", "None") != "None":
            return "LSTM projection (LSTMP) is not exportable to ONNX"
    return None


def export_onnx(prefix: str | Path, onnx_path: str | Path | None = None) -> dict:
    """Convert an mxlstm export to ``PREFIX.onnx`` (opset 13) and verify it in onnxruntime.

    Refuses (:class:`ModelFileError`, with the reason) graphs that mx2onnx converts wrongly
    or not at all; raises :class:`MxlstmError` with install instructions when ``onnx`` /
    ``onnxruntime`` are absent. Returns ``{'path', 'opset', 'max_abs_diff'}``.
    """
    symbol_file, params_file, meta_file = files_of(prefix)
    for f in (symbol_file, params_file, meta_file):
        if not f.is_file():
            raise ModelFileError(f"{f}: missing (run mxlstm export first)")
    meta = json.loads(meta_file.read_text())
    reason = onnx_refusal(meta, json.loads(symbol_file.read_text()))
    if reason:
        raise ModelFileError(f"ONNX export refused: {reason}")
    try:
        import onnx
        import onnxruntime
        from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    except ImportError as err:
        raise MxlstmError(f"ONNX export needs onnx and onnxruntime ({err.name} is missing); "
                          f"install them with: {ONNX_INSTALL}") from None
    spec = meta["input"]
    dtype = np.dtype(spec["dtype"])
    rng = np.random.RandomState(0)

    def inputs(n: int, t: int) -> list[np.ndarray]:
        x = (rng.randint(0, spec["vocab_size"], (n, t)) if spec["type"] == "tokens"
             else rng.randn(n, t, spec["features"])).astype(dtype)
        return [x] + [(0.5 * rng.randn(*[n if d == "N" else d for d in s["shape"]]))
                      .astype(np.float32) for s in spec["states"]]

    sym, args, aux = mx.model.load_checkpoint(str(prefix), 0)
    example = inputs(1, 5)
    dynamic = [(None, None) if example[0].ndim == 2 else (None, None, spec["features"])]
    dynamic += [tuple(None if d == "N" else d for d in s["shape"]) for s in spec["states"]]
    path = Path(onnx_path or str(prefix) + ".onnx")
    try:
        types = [onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype] for a in example]
        proto = MXNetGraph().create_onnx_graph_proto(
            sym, {**args, **aux}, [a.shape for a in example], types,
            opset_version=ONNX_OPSET, dynamic=True, dynamic_input_shapes=dynamic)
        model = onnx.helper.make_model(
            proto, opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)])
        onnx.checker.check_model(model)
        path.write_bytes(model.SerializeToString())
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        diff = _compare(session, import_block(prefix, spec["names"]), sym.list_outputs(),
                        spec["names"], [inputs(1, 7), inputs(3, 11)])
    except Exception as err:  # any converter or runtime failure is a refusal
        path.unlink(missing_ok=True)
        first = (str(err).strip().splitlines() or [repr(err)])[0]
        raise ModelFileError(f"ONNX export refused: conversion or onnxruntime failed "
                             f"({type(err).__name__}: {first})") from None
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise ModelFileError(f"ONNX export refused: onnxruntime differs from MXNet by "
                             f"{diff:.3g} > {TOLERANCE}")
    return {"path": str(path), "opset": ONNX_OPSET, "max_abs_diff": diff}


def _compare(session, block, outputs: list[str], names: list[str], batches: list) -> float:
    """Max abs difference between onnxruntime and MXNet, outputs matched by name
    (``foo_output`` in MXNet may be ``foo`` in ONNX); inf when one cannot be matched."""
    got = [o.name for o in session.get_outputs()]
    diff = 0.0
    for xs in batches:
        ours = [o.asnumpy() for o in flat(block(*[mx.nd.array(a, dtype=a.dtype) for a in xs]))]
        theirs = dict(zip(got, session.run(None, dict(zip(names, xs)))))
        for full, value in zip(outputs, ours):
            short = full[:-len("_output")] if full.endswith("_output") else full
            other = theirs.get(full, theirs.get(short))
            if other is None or other.shape != value.shape:
                return float("inf")
            diff = max(diff, float(np.max(np.abs(other - value))))
    return diff

"""ONNX for the models MXNet 1.9.1's mx2onnx converts exactly, verified in onnxruntime.

``export_onnx(PREFIX)`` reloads the trained run behind an mxlstm export (``source`` in
``PREFIX-meta.json``), builds an export-only graph that shares its parameters, converts it
with mx2onnx at a pinned opset 13 (mx2onnx otherwise declares onnx's newest opset over
old-style nodes) and keeps ``PREFIX.onnx`` only when onnxruntime matches the trained model
within 1e-5 at two batch sizes (outputs matched by name). ``PREFIX-meta.json`` then records
the check under ``onnx``, or the reason for a refusal.

The export-only graph (:class:`~mxlstm.deploy.graphs.FixedLengthModel` with a
:class:`~mxlstm.deploy.graphs.LayerwiseFused` encoder) runs every recurrent layer as its
own 1-layer fused ``RNN`` op (mx2onnx converts no 3+-layer or bidirectional multi-layer op, and its
2-layer conversion fails in onnxruntime unless input size = hidden size) and takes no
``valid_length``:

* language models and ``--streaming`` exports: ``data``, states -> outputs, new states;
* sequence models whose data all have one length ``T``: ``data (N, T, ...)`` -> outputs,
  every row read to its end ('last' pooling slices the last step: no ``SequenceLast``).

Refused, with the reason: variable-length data (the graph would need ``valid_length``:
length masks, ``SequenceReverse`` with lengths and gathers do not convert), the gate-level
cells path (``contrib.foreach``: peephole, layer norm, clipping, projection, zoneout,
recurrent dropout) and whatever mx2onnx or onnxruntime fail on (e.g. bidirectional GRU).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from mxlstm.deploy.export import (
    TOLERANCE,
    _rename_inputs,
    build_graph,
    files_of,
    flat,
    fold_packed_weights,
)
from mxlstm.deploy.graphs import FixedLengthModel, LayerwiseFused, data_length
from mxlstm.errors import ModelFileError, MxlstmError
from mxlstm.recurrent import RecurrentLayer

ONNX_OPSET = 13
NUMPY_PIN = "'numpy>=1.21,<1.24'"
ONNX_INSTALL = (f"make onnx, or: pip install onnx==1.14.1 {NUMPY_PIN} && pip install --no-deps "
                f"onnxruntime==1.15.1 coloredlogs humanfriendly flatbuffers sympy mpmath "
                f"packaging {NUMPY_PIN}")
BATCH_SIZES = (2, 5)


# ----------------------------------------------------------------------------- checks
def onnx_refusal(model: HybridBlock, kind: str, streaming: bool,
                 length: tuple[int | None, int, int] | None) -> str | None:
    """Why the trained ``model`` cannot go to ONNX exactly, or None. ``length`` is
    :func:`data_length` (needed for non-streaming sequence models only)."""
    refusal = getattr(model, "export_refusal", None)  # SeriesModel, ensembles
    if refusal and not hasattr(model, "encoder"):
        return refusal
    encoder = model.encoder
    if not isinstance(encoder, RecurrentLayer):
        return f"the encoder is a {type(encoder).__name__}, not an mxlstm RecurrentLayer"
    reason = encoder.fused_reason(False)
    if reason:
        return (f"the model runs on the gate-level cells path (contrib.foreach, which has no "
                f"ONNX conversion): {reason}")
    if kind != "language_model" and not streaming and length is not None and length[0] is None:
        return (f"sequences have different lengths ({length[1]} to {length[2]} steps), so the "
                f"graph needs valid_length, and mx2onnx cannot convert length-aware ops "
                f"(SequenceReverse with lengths, length masks, gathering the last valid "
                f"step). A unidirectional model with pooling 'last' exports with --streaming, "
                f"whose graph converts")
    return refusal


# ----------------------------------------------------------------------------- export
def export_onnx(prefix: str | Path, model_dir: str | Path | None = None,
                onnx_path: str | Path | None = None) -> dict:
    """Write ``PREFIX.onnx`` (opset 13) for the mxlstm export ``PREFIX`` and verify it in
    onnxruntime against the trained model; records the result (or the refusal) as
    ``onnx`` in ``PREFIX-meta.json`` and returns it.

    Raises :class:`ModelFileError` ("ONNX export refused: ...") when the conversion would
    be inexact or fails, :class:`MxlstmError` with install instructions when ``onnx`` /
    ``onnxruntime`` are absent.
    """
    symbol_file, params_file, meta_file = files_of(prefix)
    for f in (symbol_file, params_file, meta_file):
        if not f.is_file():
            raise ModelFileError(f"{f}: missing (run mxlstm export first)")
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise MxlstmError(f"ONNX export needs onnx and onnxruntime ({err.name} is missing); "
                          f"install them with: {ONNX_INSTALL}") from None
    meta = json.loads(meta_file.read_text())
    path = Path(onnx_path or str(prefix) + ".onnx")
    try:
        result = _export(meta, path, onnx, onnxruntime, model_dir)
    except ModelFileError as err:
        path.unlink(missing_ok=True)
        meta["onnx"] = {"exported": False, "refused": str(err)}
        meta_file.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        raise ModelFileError(f"ONNX export refused: {err}") from None
    meta["onnx"] = result
    meta_file.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return {"path": str(path), "max_abs_diff": result["verification"]["max_abs_diff"],
            **result}


def _export(meta: dict, path: Path, onnx, onnxruntime, model_dir) -> dict:
    from mxlstm.runs import load_model

    source = meta.get("source", {})
    model_dir = model_dir or source.get("model_dir")  # exports of mxlstm 0.1 named it
    if not model_dir or not Path(model_dir).is_dir():
        raise ModelFileError(f"the trained run {model_dir or source.get('run')!r} is not "
                             f"there; the ONNX graph is rebuilt from it (mxlstm export "
                             f"--model RUN --out PREFIX --onnx)")
    prepared, cfg, _ = load_model(model_dir, tag=source.get("tag", "best"))
    kind, streaming = meta["kind"], bool(meta.get("streaming"))
    stateful = kind == "language_model" or streaming
    length = None if stateful else data_length(prepared)
    reason = onnx_refusal(prepared.model, kind, streaming, length)
    if reason:
        raise ModelFileError(reason)
    reference, _, _ = build_graph(prepared, cfg, kind, streaming)
    graph = FixedLengthModel(prepared.model, kind, streaming, None if stateful else length[0],
                             encoder=LayerwiseFused(prepared.model.encoder, stateful))
    graph.hybridize(static_alloc=True)
    spec = meta["input"]
    names = ["data"] + [s["name"] for s in spec["states"]]
    out_names = [o["name"] for o in meta["outputs"]]
    fixed = None if stateful else length[0]
    lengths = (fixed, fixed) if fixed else (6, 11)
    batches = [_inputs(spec, n, t, seed) for seed, (n, t) in enumerate(zip(BATCH_SIZES, lengths))]
    try:
        proto = _convert(graph, batches[0], names, out_names, spec, onnx)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(proto.SerializeToString())
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        diff = _compare(session, reference, stateful, names, out_names, batches)
    except ModelFileError:
        raise
    except Exception as err:  # any converter or runtime failure is a refusal
        first = (str(err).strip().splitlines() or [repr(err)])[0][:300]
        raise ModelFileError(f"conversion or onnxruntime failed ({type(err).__name__}: "
                             f"{first})") from None
    if not diff <= TOLERANCE:
        raise ModelFileError(f"onnxruntime differs from MXNet by {diff:.3g} > {TOLERANCE}")
    shapes = [["N", fixed or "T"] + ([] if spec["type"] == "tokens" else [spec["features"]])]
    shapes += [s["shape"] for s in spec["states"]]
    return {
        "exported": True, "file": path.name, "opset": ONNX_OPSET,
        "inputs": [{"name": n, "shape": s, "dtype": str(a.dtype)}
                   for n, s, a in zip(names, shapes, batches[0])],
        "outputs": out_names, "dynamic_axes": ["N"] if fixed else ["N", "T"],
        "sequence_length": fixed,
        "graph": _describe(kind, streaming, fixed),
        "recurrent_ops": f"{graph.encoder.num_layers} x 1-layer {graph.encoder.mode}"
                         + (" bidirectional" if graph.bidirectional else ""),
        "verification": {"max_abs_diff": diff, "tolerance": TOLERANCE,
                         "batch_sizes": list(BATCH_SIZES), "lengths": list(lengths),
                         "against": "the trained model in MXNet, outputs matched by name"},
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def _describe(kind: str, streaming: bool, fixed: int | None) -> str:
    if kind == "language_model":
        return "ids and states in; per-step logits and the new states out (any N, T)"
    if streaming:
        return "a chunk and states in; per-step outputs and the new states out (any N, T)"
    return (f"no valid_length: every row must hold exactly T = {fixed} steps, unpadded (all "
            f"of the training data do); the batch size N is free")


def _inputs(spec: dict, n: int, t: int, seed: int) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    dtype = np.dtype(spec["dtype"])
    x = (rng.randint(0, spec["vocab_size"], (n, t)) if spec["type"] == "tokens"
         else rng.randn(n, t, spec["features"])).astype(dtype)
    return [x] + [(0.5 * rng.randn(*[n if d == "N" else d for d in s["shape"]]))
                  .astype(np.float32) for s in spec["states"]]


def _onnx_output_name(name: str) -> str:
    """The graph output name mx2onnx gives an MXNet output (its own naming rule)."""
    for suffix, tail in (("_state_output", "1"), ("_statecell_output", "2"), ("_output", "")):
        if name.endswith(suffix):
            return name[:-len(suffix)] + tail
    if len(name) > 8 and name[-8:-1] == "_output" and name[-1].isdigit():
        return name[:-8] + name[-1]
    return name


def _convert(graph: FixedLengthModel, example: list[np.ndarray], names: list[str],
             out_names: list[str], spec: dict, onnx):
    """MXNet symbol of ``graph`` -> ONNX ModelProto with ``names`` in and ``out_names`` out
    (initializers are not graph inputs; batch and, when stateful, time are dynamic)."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    graph(*[mx.nd.array(a, dtype=a.dtype) for a in example])
    with tempfile.TemporaryDirectory() as tmp:
        stem = str(Path(tmp) / "g")
        graph.export(stem, epoch=0)
        symbol_file, params_file, _ = files_of(stem)
        _rename_inputs(symbol_file, names)
        fold_packed_weights(symbol_file, params_file, names)
        sym, args, aux = mx.model.load_checkpoint(stem, 0)
    dynamic = [(None, None) + example[0].shape[2:]]
    dynamic += [tuple(None if d == "N" else d for d in s["shape"]) for s in spec["states"]]
    if not graph.stateful:  # fixed length: only the batch axis varies
        dynamic[0] = (None,) + example[0].shape[1:]
    types = [onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype] for a in example]
    proto = MXNetGraph().create_onnx_graph_proto(
        sym, {**args, **aux}, [a.shape for a in example], types, opset_version=ONNX_OPSET,
        dynamic=True, dynamic_input_shapes=dynamic)
    rename = {_onnx_output_name(o): new for o, new in zip(sym.list_outputs(), out_names)}
    found = {o.name for o in proto.output}
    if set(rename) != found:
        raise ModelFileError(f"cannot match the ONNX outputs {sorted(found)} to the MXNet "
                             f"outputs {sorted(rename)}")
    for node in proto.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.input[:] = [rename.get(i, i) for i in node.input]
    by_name = {rename[o.name]: o for o in proto.output}
    for o in by_name.values():
        o.name = rename[o.name]
    outputs = [by_name[n] for n in out_names]  # MXNet's order (mx2onnx sorts by name)
    del proto.output[:]
    proto.output.extend(outputs)
    constants = {i.name for i in proto.initializer}
    kept = [i for i in proto.input if i.name not in constants]
    del proto.input[:]
    proto.input.extend(kept)
    model = onnx.helper.make_model(proto, producer_name="mxlstm",
                                   opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)])
    onnx.checker.check_model(model)
    return model


def _compare(session, reference: HybridBlock, stateful: bool, names: list[str],
             out_names: list[str], batches: list) -> float:
    """Max abs difference between onnxruntime and the MXNet model on ``batches``, outputs
    matched by name; inf when a name or shape does not match."""
    if [i.name for i in session.get_inputs()] != names:
        return float("inf")
    diff = 0.0
    for xs in batches:
        arrays = [mx.nd.array(a, dtype=a.dtype) for a in xs]
        if not stateful:  # every row has all its steps
            arrays.append(mx.nd.full((xs[0].shape[0],), xs[0].shape[1]))
        ours = [o.asnumpy() for o in flat(reference(*arrays))]
        theirs = dict(zip([o.name for o in session.get_outputs()],
                          session.run(None, dict(zip(names, xs)))))
        for name, value in zip(out_names, ours):
            other = theirs.get(name)
            if other is None or other.shape != value.shape:
                return float("inf")
            diff = max(diff, float(np.max(np.abs(other - value))))
    return diff

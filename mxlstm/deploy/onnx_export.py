"""``PREFIX.onnx``: native ONNX recurrent ops with ``sequence_lens``, verified at export.

``export_onnx(PREFIX, model_dir=RUN)`` reloads the trained run behind an mxlstm export,
writes its graph with :func:`mxlstm.deploy.onnx_graph.build_onnx` (opset 17; the same
inputs and outputs as the MXNet export: ``data``, ``valid_length`` or states) and keeps
``PREFIX.onnx`` only when ONNX Runtime matches the trained mxlstm model within 1e-5 on the
outputs **and** the final states, on batches of random lengths with random values in the
padding (:mod:`mxlstm.deploy.onnx_check`). ``int8=True`` also writes ``PREFIX-int8.onnx``
(ONNX Runtime dynamic quantization: ``DynamicQuantizeLSTM``, integer matrix products) and
records its size and how far it moves the outputs. ``PREFIX-meta.json`` records the
result under ``onnx`` (or the reason for a refusal), with the files' sha256 for the
standalone predictor (``Predictor(PREFIX, backend="onnxruntime")``).

Refused in one line: what ONNX's LSTM/GRU/RNN cannot express (layer norm, recurrent
projection, cell or hidden clipping, zoneout), and a failure of the check.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mxlstm.errors import ModelFileError, MxlstmError

NUMPY_PIN = "'numpy>=1.21,<1.24'"
ONNX_INSTALL = (f"make onnx, or: pip install onnx==1.14.1 {NUMPY_PIN} && pip install --no-deps "
                f"onnxruntime==1.15.1 coloredlogs humanfriendly flatbuffers sympy mpmath "
                f"packaging {NUMPY_PIN}")
TOLERANCE = 1e-5
INT8_SUFFIX = "-int8.onnx"


def onnx_refusal(model) -> str | None:
    """Why the trained ``model`` has no exact ONNX graph, or None (needs no onnx)."""
    from mxlstm.blocks.recurrent import RecurrentLayer
    from mxlstm.ensemble import EnsembleModel

    if isinstance(model, EnsembleModel):  # one graph of the members: each must export
        for k, member in enumerate(model._members):
            reason = onnx_refusal(member)
            if reason:
                return f"ensemble member {k}: {reason}"
        return None
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, RecurrentLayer):
        return f"the encoder is a {type(encoder).__name__}, not an mxlstm RecurrentLayer"
    if encoder.layout != "NTC":
        return f"the encoder's layout is {encoder.layout}; only NTC is exported"
    if encoder.zoneout:
        return ("zoneout mixes old and new states at inference ((1-p)*new + p*old), which "
                "ONNX's recurrent ops cannot express")
    cell = encoder._table.cells[0]
    for option, what in (("layer_norm", "layer normalisation inside the cell"),
                         ("projection_size", "a recurrent projection (LSTMP)"),
                         ("cell_clip", "clipping of the cell state"),
                         ("hidden_clip", "clipping of the output h")):
        if getattr(cell, option, None):
            return f"{what} ({option}) has no ONNX LSTM equivalent"
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _modules():
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise MxlstmError(f"ONNX export needs onnx and onnxruntime ({err.name} is missing); "
                          f"install them with: {ONNX_INSTALL}") from None
    return onnx, onnxruntime


def export_onnx(prefix: str | Path, model_dir: str | Path, onnx_path: str | Path | None = None,
                int8: bool = False, int8_conv: bool = True) -> dict:
    """Write ``PREFIX.onnx`` (and with ``int8`` ``PREFIX-int8.onnx``) for the mxlstm export
    ``PREFIX`` of the trained run ``model_dir``; returns the ``onnx`` record of
    ``PREFIX-meta.json`` plus ``path``. ``int8_conv``: the int8 graph also quantizes the
    series model's convolutions, statically, calibrated on training samples (False: they
    stay fp32; :mod:`mxlstm.deploy.onnx_quantize`).

    Raises :class:`ModelFileError` ("ONNX export refused: ...") when the model has no exact
    ONNX form or the check fails (the file is then removed), :class:`MxlstmError` with
    install instructions when ``onnx`` / ``onnxruntime`` are absent.
    """
    from mxlstm.deploy.export import files_of

    meta_file = files_of(prefix)[2]
    for f in files_of(prefix):
        if not f.is_file():
            raise ModelFileError(f"{f}: missing (run mxlstm export first)")
    onnx, onnxruntime = _modules()
    meta = json.loads(meta_file.read_text())
    path = Path(onnx_path or str(prefix) + ".onnx")
    int8_path = Path(str(path)[:-len(".onnx")] + INT8_SUFFIX) if str(path).endswith(".onnx") \
        else Path(str(path) + INT8_SUFFIX)
    try:
        prepared, cfg, _ = _load(meta, model_dir)
        result = _export(meta, path, prepared, cfg, onnx, onnxruntime)
        result["int8"] = _quantize(path, int8_path, meta, prepared if int8_conv else None) \
            if int8 else None
    except ModelFileError as err:
        path.unlink(missing_ok=True)
        int8_path.unlink(missing_ok=True)
        meta["onnx"] = {"exported": False, "refused": str(err)}
        meta_file.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        raise ModelFileError(f"ONNX export refused: {err}") from None
    meta["onnx"] = result
    meta_file.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return {"path": str(path), "max_abs_diff": result["verification"]["max_abs_diff"],
            **result}


def _load(meta: dict, model_dir):
    from mxlstm.runs import load_model

    source = meta.get("source", {})
    if not Path(model_dir).is_dir():
        raise ModelFileError(f"the trained run {str(model_dir)!r} is not there; the ONNX graph "
                             f"is written from its weights (mxlstm export --model RUN --out "
                             f"PREFIX --onnx)")
    if source.get("run") and Path(model_dir).resolve().name != source["run"]:
        raise ModelFileError(f"the export was made from run {source['run']!r}, not "
                             f"{Path(model_dir).resolve().name!r}")
    return load_model(model_dir, tag=source.get("tag", "best"))


def _export(meta: dict, path: Path, prepared, cfg, onnx, onnxruntime) -> dict:
    from mxlstm.deploy import onnx_series
    from mxlstm.deploy.onnx_check import check_model
    from mxlstm.deploy.onnx_graph import OPSET, build_onnx, is_ensemble, is_series

    model, kind, streaming = prepared.model, meta["kind"], bool(meta.get("streaming"))
    reason = onnx_refusal(model)
    if reason:
        raise ModelFileError(reason)
    spec, out_names = meta["input"], [o["name"] for o in meta["outputs"]]
    try:
        proto = build_onnx(model, kind, streaming, spec, out_names)
        checked = build_onnx(model, kind, streaming, spec, out_names, check_states=True)
        onnx.checker.check_model(proto)
        report = check_model(prepared, cfg, meta, checked.SerializeToString(),
                             proto.SerializeToString())
    except (ValueError, RuntimeError, onnx.checker.ValidationError) as err:
        first = (str(err).strip().splitlines() or [repr(err)])[0][:300]
        raise ModelFileError(f"building or running the ONNX graph failed "
                             f"({type(err).__name__}: {first})") from None
    if not report["max_excess"] <= TOLERANCE:  # |onnx - mxlstm| <= 1e-5 + 1e-6 |mxlstm|
        worst = max(report["max_abs_diff"], report["states_max_abs_diff"] or 0.0)
        raise ModelFileError(f"ONNX Runtime differs from mxlstm by {worst:.3g} > {TOLERANCE} "
                             f"+ {report['rtol']:g} x |value|")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    members = model._members if is_ensemble(model) else [model]
    encoder = members[0].encoder
    op = {"lstm": "LSTM", "gru": "GRU"}.get(encoder.cell_type, "RNN")
    stages = onnx_series.stages(members[0]) if is_series(members[0]) else []
    if len(members) > 1 or is_ensemble(model):
        stages.append(f"{len(members)} ensemble members averaged")
    return {
        "exported": True, "file": path.name, "sha256": _sha256(path), "opset": OPSET,
        "bytes": path.stat().st_size, "inputs": spec["names"], "outputs": out_names,
        "recurrent_ops": (f"{len(members)} x " if len(members) > 1 else "")
                         + f"{encoder.num_layers} x ONNX {op}"
                         + (" bidirectional" if encoder.num_directions == 2 else "")
                         + (" with sequence_lens" if "valid_length" in spec["names"] else ""),
        "other_stages": stages,
        "verification": {**report, "tolerance": TOLERANCE},
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def _quantize(path: Path, int8_path: Path, meta: dict, prepared=None) -> dict:
    """``PREFIX-int8.onnx``: dynamic quantization (int8 weights, activations quantized per
    call), and with ``prepared`` (the trained run) convolutions quantized statically on
    its training samples; records sizes and the change of the outputs on the check batches
    (and, when calibrated, on the validation split)."""
    from mxlstm.deploy.onnx_calibrate import SAMPLES, calibration_batches, split_batches
    from mxlstm.deploy.onnx_check import compare_sessions
    from mxlstm.deploy.onnx_quantize import has_conv, quantize

    calibration = calibration_batches(prepared, meta) \
        if prepared is not None and has_conv(path) else None
    ops = quantize(path, int8_path, calibration)
    calibrated = "QLinearConv" in ops
    fp32, int8 = path.read_bytes(), int8_path.read_bytes()
    record = {"file": int8_path.name, "sha256": _sha256(int8_path),
              "bytes": int8_path.stat().st_size,
              "size_ratio": round(path.stat().st_size / int8_path.stat().st_size, 3),
              "quantized_ops": ops, "method": "onnxruntime.quantization.quantize_dynamic "
              "(QInt8 weights, per-tensor)" + ("; Conv: quantize_static (QOperator, "
                                               "per-channel QInt8 weights, QUInt8 "
                                               "activations, MinMax)" if calibrated else ""),
              "vs_fp32": compare_sessions(fp32, int8, meta)}
    if calibrated:
        record["calibration"] = {"split": "train", "augmentation": False, "max_samples": SAMPLES,
                                 "samples": sum(len(b["valid_length"]) for b in calibration)}
        record["vs_fp32_valid"] = compare_sessions(fp32, int8, meta,
                                                   split_batches(prepared.valid_loader, meta))
    return record

"""What int8 costs and buys, per trained run: ``python -m mxlstm.deploy.int8_report RUN
[RUN ...] --out-dir DIR [--repeats 100] [--rounds 5] [--fp32-conv]``.

For each run: ``mxlstm export --onnx --int8`` into ``DIR/<run>``, then one JSON object
with the file size ratio (fp32 / int8), the latency ratio int8 / fp32 ONNX at batch 1 and
32 (graph only and end to end, the two sessions interleaved in one process, one intra-op
thread; :func:`mxlstm.deploy.latency.measure_latency`) and the test-set metric in ONNX
Runtime for both graphs: accuracy for classifiers, perplexity for language models (states
carried across the BPTT batches as in training's evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mxlstm.kinds import KINDS


def _session(path: Path):
    from mxlstm.deploy.onnx_check import session

    return session(path.read_bytes())


def onnx_test_metric(prepared, meta: dict, path: Path) -> dict:
    """``{accuracy}`` or ``{perplexity}`` of the ONNX graph at ``path`` on the run's test
    split."""
    sess = _session(path)
    names = [i.name for i in sess.get_inputs()]
    dtype = np.dtype(meta["input"]["dtype"])
    if KINDS[meta["kind"]].answer == "tokens":  # a language model
        nll, count, states = 0.0, 0, None
        for ids, target in prepared.test_loader:
            ids, target = ids.asnumpy().astype(dtype), target.asnumpy().astype(np.int64)
            if states is None or states[0].shape[1] != len(ids):
                states = [np.zeros([len(ids) if d == "N" else d for d in s["shape"]],
                                   np.float32) for s in meta["input"]["states"]]
            logits, *states = sess.run(None, dict(zip(names, [ids, *states])))
            z = logits.astype(np.float64)
            z -= z.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            nll -= float(np.take_along_axis(logp, target[..., None], -1).sum())
            count += target.size
        return {"perplexity": round(float(np.exp(nll / count)), 3)}
    right = total = 0
    for batch in prepared.test_loader:
        x, y = batch[0].asnumpy().astype(dtype), batch[1].asnumpy().astype(np.int64)
        arrays = {"data": x, "valid_length": batch[2].asnumpy().astype(np.float32)
                  if len(batch) > 2 else np.full(len(x), x.shape[1], np.float32)}
        logits = sess.run(None, {n: arrays[n] for n in names})[0]
        right += int((logits.argmax(-1) == y).sum())
        total += y.size
    return {"accuracy": round(right / total, 4), "examples": total}


def report(run: Path, out_dir: Path, repeats: int = 100, rounds: int = 5,
           conv: bool = True) -> dict:
    """Export ``run`` with ``--onnx --int8`` into ``out_dir`` and measure (module doc);
    ``conv=False``: the series model's convolutions stay fp32 (``export_onnx(int8_conv=)``)."""
    from mxlstm.deploy.export import export_model
    from mxlstm.deploy.latency import measure_latency
    from mxlstm.deploy.onnx_export import export_onnx
    from mxlstm.runs import load_model

    prefix = out_dir / run.name
    meta = export_model(run, prefix)
    record = export_onnx(prefix, model_dir=run, int8=True, int8_conv=conv)
    fp32, int8 = Path(str(prefix) + ".onnx"), Path(str(prefix) + "-int8.onnx")
    prepared, _, _ = load_model(run)
    metrics = {name: onnx_test_metric(prepared, meta, path)
               for name, path in (("fp32", fp32), ("int8", int8))}
    key = "perplexity" if "perplexity" in metrics["fp32"] else "accuracy"
    a, b = metrics["fp32"][key], metrics["int8"][key]
    change = {"accuracy_points": round(100 * (b - a), 2)} if key == "accuracy" else \
        {"perplexity_relative_percent": round(100 * (b - a) / a, 2)}
    timing = measure_latency([str(prefix)], (1, 32), repeats, 20, rounds,
                             ("onnxruntime", "onnxruntime-int8"), ort_threads=1)
    fp, q = timing["exports"]
    latency = {batch: {part: {"fp32_p50_ms": fp["batches"][batch][part]["p50_ms"],
                              "int8_p50_ms": q["batches"][batch][part]["p50_ms"],
                              "speedup": round(1 / q["batches"][batch]["vs_first"][part], 3)}
                       for part in ("graph_only", "end_to_end")} for batch in ("1", "32")}
    return {"run": run.name, "task": meta["task"], "bytes": {"fp32": fp32.stat().st_size,
                                                              "int8": int8.stat().st_size},
            "size_ratio": record["int8"]["size_ratio"],
            "quantized_ops": record["int8"]["quantized_ops"],
            "method": record["int8"]["method"],
            "test": metrics, "change": change, "latency": latency,
            "fp32_vs_mxlstm_max_abs_diff": record["verification"]["max_abs_diff"],
            "machine": timing["machine"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.deploy.int8_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="trained run directories")
    parser.add_argument("--out-dir", required=True, metavar="DIR", help="where to export")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fp32-conv", action="store_true",
                        help="keep the series model's convolutions fp32 (default: static "
                        "int8, calibrated on training samples)")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(json.dumps(report(Path(run), Path(args.out_dir), args.repeats, args.rounds,
                                not args.fp32_conv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

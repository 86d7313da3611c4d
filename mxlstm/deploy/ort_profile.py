"""Where an ONNX export spends its time in ONNX Runtime: ``python -m mxlstm.deploy.ort_profile
PREFIX [PREFIX ...] [--int8] [--batch-size 32] [--calls 200] [--ort-threads 1]``.

For each export, one ONNX Runtime session with profiling on (``SessionOptions.
enable_profiling``) runs ``calls`` times on a batch of the predictor's own inputs (rows of
the longest training length, :func:`mxlstm.deploy.latency.sample_raw_inputs`); the first
tenth are warm-up and left out. Prints one JSON object per export: the median
``model_run`` time, and per operator type the median over calls of the microseconds its
nodes took in a call (``*_kernel_time`` events), its share of the kernels' total, and the
node count. The gap between ``model_run`` and the kernels' sum is ONNX Runtime's own
per-call overhead (input binding, allocation, output copies) and the profiler's.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _inputs(prefix: str, batch_size: int) -> dict[str, np.ndarray]:
    from mxlstm.deploy.latency import sample_raw_inputs
    from mxlstm.deploy.predictor import Predictor

    predictor = Predictor(prefix, backend="onnxruntime", threads=1)
    x, lengths = predictor.batch(sample_raw_inputs(predictor, batch_size))
    arrays = {"data": x, "valid_length": lengths}
    arrays.update({s["name"]: v for s, v in zip(predictor.states,
                                                 predictor.begin_states(batch_size))})
    return {name: arrays[name] for name in predictor.input_names}


def profile_export(prefix: str, int8: bool = False, batch_size: int = 32, calls: int = 200,
                   threads: int = 1) -> dict:
    """Per-operator-type time of ``PREFIX.onnx`` (``PREFIX-int8.onnx`` with ``int8``) at
    ``batch_size`` (see the module docstring)."""
    import onnxruntime as ort

    path = Path(str(prefix) + ("-int8.onnx" if int8 else ".onnx"))
    arrays = _inputs(str(prefix), batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(calls):
            session.run(None, arrays)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session"
                   and e.get("name") == "model_run"), key=lambda e: e["ts"])
    kept = runs[max(1, calls // 10):]
    starts = [e["ts"] for e in kept]
    per_call: dict[str, np.ndarray] = {}
    nodes: dict[str, set] = defaultdict(set)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        k = bisect.bisect_right(starts, e["ts"]) - 1
        if k < 0:
            continue  # a warm-up call
        op = e.get("args", {}).get("op_name", "?")
        per_call.setdefault(op, np.zeros(len(kept)))[k] += e["dur"]
        nodes[op].add(e["name"])
    medians = {op: float(np.median(v)) for op, v in per_call.items()}
    total = sum(medians.values()) or 1.0
    ops = {op: {"us_per_call": round(us, 1), "share": round(us / total, 3),
                "nodes": len(nodes[op])}
           for op, us in sorted(medians.items(), key=lambda kv: -kv[1])}
    return {"file": path.name, "batch_size": batch_size, "calls_timed": len(kept),
            "input_shape": list(arrays["data"].shape), "intra_op_num_threads": threads,
            "model_run_p50_us": float(np.median([e["dur"] for e in kept])),
            "kernels_us_per_call": round(total, 1), "ops": ops,
            "onnxruntime": ort.__version__, "load_average_1min": round(os.getloadavg()[0], 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.deploy.ort_profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="export prefix(es)")
    parser.add_argument("--int8", action="store_true", help="profile PREFIX-int8.onnx")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--ort-threads", type=int, default=1)
    args = parser.parse_args(argv)
    for prefix in args.prefixes:
        print(json.dumps(profile_export(prefix, args.int8, args.batch_size, args.calls,
                                        args.ort_threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency and throughput of the standalone predictor on one or more exports and backends.

``python -m mxlstm.deploy.latency PREFIX [PREFIX ...] [--backends mxnet,onnxruntime,
onnxruntime-int8] [--ort-threads 1] [--batch-sizes 1,64] [--repeats 100] [--rounds 5]``
prints one JSON object. Each (export, backend) and batch size is timed end to end (raw
inputs -> answers: preprocessing, padding, the graph, softmax and the result dicts) and
for the graph alone. All are interleaved in one process: each of ``rounds`` rounds times
``repeats`` calls of every (export, backend) in turn (after warm-up calls), so a change in
the machine's load falls on all of them alike. p50/p90/p99 are over all timed calls;
``rounds_p50`` gives the spread of the per-round medians; ``vs_first`` is the ratio of
p50s to the first backend's on the same export (with one backend: to the first
export's). ONNX Runtime's thread settings are recorded under ``machine.onnxruntime``.

MXNet reads its engine and thread settings at import, so set them in the environment:
``MXNET_ENGINE_TYPE=NaiveEngine`` runs each operator in the calling thread (no hand-off to
engine workers), which lowers batch-1 latency, most of all on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

import mxnet as mx
import numpy as np

from mxlstm.deploy.predictor import Predictor

PARTS = ("end_to_end", "graph_only")


def sample_raw_inputs(predictor: Predictor, count: int, seed: int = 0) -> list:
    """``count`` raw inputs the export accepts: float rows ``(T, C)`` around the training
    statistics (T = the fixed length, else the longest training sequence), or texts of
    vocabulary words."""
    rng = np.random.RandomState(seed)
    spec, pre = predictor.meta["input"], predictor.meta["preprocessing"]
    length = (spec.get("fixed_length") or spec.get("max_train_length")
              or spec.get("sequence_length") or 20)
    if spec["type"] == "tokens":
        words = [w for w in (pre.get("idx_to_token") or [])[3:] if w.strip()] or ["a"]
        join = "" if (pre.get("tokenizer") or {}).get("level") == "char" else " "
        return [join.join(rng.choice(words, size=length)) for _ in range(count)]
    norm = pre.get("normalization") or {"mean": 0.0, "std": 1.0}
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    return [mean + std * rng.randn(length, spec["features"]) for _ in range(count)]


def _timings(call: Callable[[], object], repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    seconds = np.empty(repeats)
    for k in range(repeats):
        start = time.perf_counter()
        call()
        seconds[k] = time.perf_counter() - start
    return seconds


def _summary(rounds: list[np.ndarray], batch: int) -> dict:
    seconds = np.concatenate(rounds)
    p50, p90, p99 = (float(np.percentile(seconds, q)) for q in (50, 90, 99))
    per_round = [1e3 * float(np.median(r)) for r in rounds]
    return {"p50_ms": round(1e3 * p50, 3), "p90_ms": round(1e3 * p90, 3),
            "p99_ms": round(1e3 * p99, 3),
            "rounds_p50_ms": [round(min(per_round), 3), round(max(per_round), 3)],
            "throughput_per_s": round(batch / p50, 1)}


def _calls(predictor: Predictor, batch: int) -> tuple[dict[str, Callable], list[int]]:
    """The two timed calls for one batch size, and the graph input's shape."""
    items = sample_raw_inputs(predictor, batch)
    x, lengths = predictor.batch(items)
    arrays = {"data": x, "valid_length": lengths}
    arrays.update({s["name"]: v for s, v in zip(predictor.states,
                                                 predictor.begin_states(batch))})
    graph_inputs = [arrays[name] for name in predictor.input_names]
    return ({"end_to_end": partial(predictor.predict, items),
             "graph_only": partial(predictor.forward, *graph_inputs)}, list(x.shape))


def measure_latency(prefixes: str | Sequence[str], batch_sizes: Sequence[int] = (1, 64),
                    repeats: int = 100, warmup: int = 20, rounds: int = 5,
                    backends: Sequence[str] = ("mxnet",), ort_threads: int | None = 1
                    ) -> dict:
    """Per (export, backend) and batch size: ``end_to_end`` and ``graph_only`` ``{p50_ms,
    p90_ms, p99_ms, rounds_p50_ms [min, max], throughput_per_s}`` (throughput = batch /
    p50), the input shape and ``vs_first`` (p50 / the first backend's p50 on the same
    export); plus the machine and ONNX Runtime's threads (``ort_threads`` intra-op threads,
    None: its default)."""
    prefixes = [prefixes] if isinstance(prefixes, (str, os.PathLike)) else list(prefixes)
    pairs = [(p, b) for p in prefixes for b in backends]
    predictors = [Predictor(p, backend=b, threads=ort_threads) for p, b in pairs]
    calls = {(k, b): _calls(p, b) for k, p in enumerate(predictors) for b in batch_sizes}
    samples: dict = {key: {part: [] for part in PARTS} for key in calls}
    for index in range(rounds):
        for key, (timed, _) in calls.items():
            for part in PARTS:
                samples[key][part].append(_timings(timed[part], repeats,
                                                   warmup if index == 0 else 2))
    p50 = {key: {part: float(np.median(np.concatenate(runs))) for part, runs in parts.items()}
           for key, parts in samples.items()}
    exports = []
    for k, ((prefix, backend), predictor) in enumerate(zip(pairs, predictors)):
        # one backend: against the first export; several: the same export's first backend
        first = 0 if len(backends) == 1 else k - k % len(backends)
        batches = {}
        for b in batch_sizes:
            entry: dict = {part: _summary(samples[(k, b)][part], b) for part in PARTS}
            entry["input_shape"] = calls[(k, b)][1]
            if k != first:
                entry["vs_first"] = {part: round(p50[(k, b)][part] / p50[(first, b)][part], 3)
                                     for part in PARTS}
            batches[str(b)] = entry
        exports.append({"prefix": str(prefix), "backend": backend,
                        "task": predictor.meta["task"], "inputs": predictor.input_names,
                        "batches": batches})
    ort = None
    if any(b != "mxnet" for b in backends):
        import onnxruntime

        ort = {"version": onnxruntime.__version__, "intra_op_num_threads": ort_threads or
               "default (one per core)", "inter_op_num_threads": 1,
               "execution_mode": "sequential", "provider": "CPUExecutionProvider"}
    return {"exports": exports, "repeats": repeats, "rounds": rounds, "warmup": warmup,
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or
                        platform.machine(), "python": platform.python_version(),
                        "mxnet": mx.__version__,
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                        "engine": os.environ.get("MXNET_ENGINE_TYPE",
                                                 "ThreadedEnginePerDevice"),
                        "load_average_1min": round(os.getloadavg()[0], 2),
                        "onnxruntime": ort}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.deploy.latency",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="export prefix(es)")
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--backends", default="mxnet",
                        help="comma-separated: mxnet, onnxruntime, onnxruntime-int8")
    parser.add_argument("--ort-threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (0: its default)")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    backends = [v.strip() for v in args.backends.split(",") if v.strip()]
    print(json.dumps(measure_latency(args.prefixes, sizes, args.repeats, args.warmup,
                                     args.rounds, backends, args.ort_threads or None),
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency and throughput of the standalone predictor on an export.

``python -m mxlstm.deploy.latency PREFIX [--batch-sizes 1,64] [--repeats 200]`` prints one
JSON object. Each batch size is timed end to end (raw inputs -> answers: preprocessing,
padding, the MXNet graph, softmax and the result dicts) and for the graph alone, after
warm-up calls; p50/p90 are over ``repeats`` timed calls.

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
from collections.abc import Sequence
from functools import partial

import mxnet as mx
import numpy as np

from mxlstm.deploy.predictor import Predictor


def sample_raw_inputs(predictor: Predictor, count: int, seed: int = 0) -> list:
    """``count`` raw inputs the export accepts: float rows ``(T, C)`` around the training
    statistics (T = the longest training sequence), or texts of vocabulary words."""
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


def _timings(call, repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    seconds = np.empty(repeats)
    for k in range(repeats):
        start = time.perf_counter()
        call()
        seconds[k] = time.perf_counter() - start
    return seconds


def _summary(seconds: np.ndarray, batch: int) -> dict:
    p50, p90 = (float(np.percentile(seconds, q)) for q in (50, 90))
    return {"p50_ms": round(1e3 * p50, 3), "p90_ms": round(1e3 * p90, 3),
            "throughput_per_s": round(batch / p50, 1)}


def measure_latency(prefix: str, batch_sizes: Sequence[int] = (1, 64), repeats: int = 200,
                    warmup: int = 20) -> dict:
    """Per batch size: ``end_to_end`` and ``graph_only`` ``{p50_ms, p90_ms,
    throughput_per_s}`` (throughput = batch / p50), plus the machine it ran on."""
    predictor = Predictor(prefix)
    result: dict = {"prefix": str(prefix), "task": predictor.meta["task"],
                    "repeats": repeats, "warmup": warmup, "batches": {}}
    for batch in batch_sizes:
        items = sample_raw_inputs(predictor, batch)
        x, lengths = predictor.batch(items)
        arrays = {"data": x, "valid_length": lengths}
        arrays.update({s["name"]: v for s, v in zip(predictor.states,
                                                     predictor.begin_states(batch))})
        graph_inputs = [arrays[name] for name in predictor.input_names]
        end_to_end = _timings(partial(predictor.predict, items), repeats, warmup)
        graph_only = _timings(partial(predictor.forward, *graph_inputs), repeats, warmup)
        result["batches"][str(batch)] = {"end_to_end": _summary(end_to_end, batch),
                                         "graph_only": _summary(graph_only, batch),
                                         "input_shape": list(x.shape)}
    result["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or
                         platform.machine(), "python": platform.python_version(),
                         "mxnet": mx.__version__,
                         "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                         "engine": os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice"),
                         "load_average_1min": round(os.getloadavg()[0], 2)}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.deploy.latency",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="export prefix")
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    print(json.dumps(measure_latency(args.prefix, sizes, args.repeats, args.warmup), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

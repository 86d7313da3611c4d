"""Two batch-1 inference costs behind the export choices (docs/benchmarks.md, latency).

1. MXNet's fused LSTM op: one bidirectional call vs two unidirectional calls (what
   ``mxlstm export --fixed-length`` runs), forward only, inputs ``(T, N, C)``.
2. Getting a numpy input into MXNet: a new ``mx.nd.array`` per call vs a copy into an
   NDArray kept per shape (what the predictor does).

    .venv/bin/python scripts/inference_op_timings.py [--rounds 5]

Each figure is the median over ``rounds`` interleaved rounds of per-round medians.
"""

from __future__ import annotations

import argparse
import time

import mxnet as mx
import numpy as np

SHAPES = [(256, 8, 8, 1), (256, 8, 8, 64), (128, 28, 28, 128), (64, 8, 8, 1)]  # H, C, T, N


def median_ms(call, repeats: int) -> float:
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return 1e3 * float(np.median(seconds))


def rnn_calls(hidden: int, channels: int, steps: int, batch: int) -> dict:
    x = mx.nd.random.normal(shape=(steps, batch, channels))
    calls = {}
    for directions in (1, 2):
        size = directions * (4 * hidden * (channels + hidden) + 8 * hidden)
        params = mx.nd.random.normal(shape=(size,)) * 0.05
        zeros = mx.nd.zeros((directions, batch, hidden))
        calls[directions] = (lambda p=params, z=zeros, bi=directions == 2: mx.nd.RNN(
            x, p, z, z, state_size=hidden, num_layers=1, bidirectional=bi, mode="lstm",
            state_outputs=False).wait_to_read())
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    for shape in SHAPES:
        calls = rnn_calls(*shape)
        uni, bi = [], []
        for _ in range(args.rounds):
            uni.append(median_ms(calls[1], args.repeats))
            bi.append(median_ms(calls[2], args.repeats))
        u, b = float(np.median(uni)), float(np.median(bi))
        print(f"LSTM H={shape[0]} C={shape[1]} T={shape[2]} N={shape[3]}: one unidirectional "
              f"{u:.3f} ms, one bidirectional {b:.3f} ms, bidirectional / (2 x unidirectional)"
              f" {b / (2 * u):.2f}")
    x = np.random.randn(1, 8, 8).astype(np.float32)
    kept = mx.nd.empty(x.shape, dtype=x.dtype)
    new, copy = [], []
    for _ in range(args.rounds):
        new.append(median_ms(lambda: mx.nd.array(x, dtype=x.dtype), 20 * args.repeats))
        copy.append(median_ms(lambda: kept._sync_copyfrom(x), 20 * args.repeats))
    print(f"input (1, 8, 8): new mx.nd.array {1e3 * np.median(new):.1f} us, copy into a kept "
          f"NDArray {1e3 * np.median(copy):.1f} us")


if __name__ == "__main__":
    main()

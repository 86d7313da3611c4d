"""The fused token loss against ``log_softmax`` + ``pick``, forward + backward.

``python -m mxlstm.bench.nll_ab [--rows 1120] [--classes 10000] [--repeats 9]`` times both
in one process, interleaved, on the same logits (an LM step's shape by default) and prints
the median milliseconds of each and their ratio. Run it with ``OMP_NUM_THREADS=1`` for the
one-thread figure of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from mxlstm import kernels


def step_seconds(loss_fn, logits, labels) -> float:
    x = logits.copy()
    x.attach_grad()
    mx.nd.waitall()
    start = time.perf_counter()
    with autograd.record():
        loss = loss_fn(x, labels)
    loss.backward()
    mx.nd.waitall()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.bench.nll_ab",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1120)
    parser.add_argument("--classes", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    if kernels.status() is not None:
        print(f"nll_ab: mxlstm kernel: {kernels.status()}", file=sys.stderr)
        return 2
    rng = np.random.RandomState(0)
    logits = mx.nd.array(rng.normal(size=(args.rows, args.classes)))
    labels = mx.nd.array(rng.randint(0, args.classes, size=args.rows))
    fused = getattr(mx.nd, kernels.NLL_OP_NAME)

    def mxnet_form(x, y):
        return -mx.nd.pick(mx.nd.log_softmax(x, axis=-1), y, axis=-1)

    times: dict[str, list[float]] = {"fused": [], "log_softmax + pick": []}
    for _ in range(args.repeats + 1):  # the first round warms up
        times["fused"].append(step_seconds(fused, logits, labels))
        times["log_softmax + pick"].append(step_seconds(mxnet_form, logits, labels))
    med = {k: 1000 * statistics.median(v[1:]) for k, v in times.items()}
    print(f"({args.rows} x {args.classes}) forward + backward: fused {med['fused']:.1f} ms, "
          f"log_softmax + pick {med['log_softmax + pick']:.1f} ms, "
          f"ratio {med['log_softmax + pick'] / med['fused']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

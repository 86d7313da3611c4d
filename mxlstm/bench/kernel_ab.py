"""In-process interleaved A/B of the recurrent layer alone: mxlstm kernel vs MXNet's RNN op.

``python -m mxlstm.bench.kernel_ab CONFIG [REPEATS [GEMM_A GEMM_B]]`` (CONFIG: a name from
:mod:`mxlstm.bench.configs`; with GEMM_A GEMM_B, e.g. ``blas auto``, the kernel with
``MXLSTM_KERNEL_GEMM=GEMM_A`` is timed against the kernel with ``GEMM_B`` instead). Both
layers (same shapes, TNC, hybridized with ``static_alloc``) live in one process; each
repeat times two steps of each back to back and records ``time(MXNet op) / time(kernel)``;
prints the median (min, max) per mode. Meant
for a shared machine: one process, one thread if ``OMP_NUM_THREADS=1``, ratios only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import mxnet as mx
from mxnet import autograd

import mxlstm
from mxlstm.bench.configs import get_config


def _step(net, x, train: bool) -> None:
    if train:
        with autograd.record():
            y = net(x)
        y.backward(mx.nd.ones_like(y))
    else:
        net(x)
    mx.nd.waitall()


def main(argv: list[str]) -> None:
    cfg = get_config(argv[0])
    repeats = int(argv[1]) if len(argv) > 1 else 9
    x = mx.nd.random.normal(shape=(cfg.seq_len, cfg.batch_size, cfg.input_size))
    # (MXLSTM_KERNEL, MXLSTM_KERNEL_GEMM) of the two layers; ratio = time(a) / time(b)
    variants = {"a": ("0", "auto"), "b": ("1", "auto")}
    label = "MXNet RNN op time / kernel time"
    if len(argv) > 3:
        variants = {"a": ("1", argv[2]), "b": ("1", argv[3])}
        label = f"kernel gemm={argv[2]} time / gemm={argv[3]} time"
    nets = {}
    for which, (kernel, gemm) in variants.items():  # fixed when the graph is built
        os.environ["MXLSTM_KERNEL"] = kernel
        os.environ["MXLSTM_KERNEL_GEMM"] = gemm
        net = mxlstm.LSTM(cfg.hidden_size, cfg.num_layers, layout="TNC",
                          input_size=cfg.input_size, fused=True)
        net.initialize(mx.init.Uniform(0.1))
        net.hybridize(static_alloc=True)
        _step(net, x, False)
        nets[which] = net
    for train in (True, False):
        for net in nets.values():
            _step(net, x, train)
        ratios = []
        for _ in range(repeats):
            took = {}
            for which, net in nets.items():
                start = time.perf_counter()
                _step(net, x, train)
                _step(net, x, train)
                took[which] = time.perf_counter() - start
            ratios.append(took["a"] / took["b"])
        print(f"{cfg.name} {'train' if train else 'infer'}: {label} "
              f"median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}, n={repeats})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

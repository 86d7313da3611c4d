"""MXNet rows (mxlstm kernel, mxlstm fused, mxlstm gate-level, bare ``gluon.rnn.LSTM``), the GEMM
roof and the profiler. Never imports torch.

Every model is hybridized with ``static_alloc=True, static_shape=True`` (``static_shape``
can be switched off), except the gate-level path, which gets ``static_alloc`` only: on
MXNet 1.9.1 ``contrib.foreach`` fed by an in-graph op computes wrong values under
``static_shape=True`` (mxlstm refuses that combination). Each timed step ends with
``mx.nd.waitall()`` so the clock sees finished work. Each run also reports
``check_max_abs_diff``: how far the hybridized model's first output (train: loss) is
from the same model run imperatively.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

import mxlstm
from mxlstm.bench.configs import (
    SEED,
    BenchConfig,
    Gemm,
    forward_gemms,
    make_batch,
    result_line,
    time_steps,
    train_gemms,
)
from mxlstm.kernels.loss import softmax_nll

CTX = mx.cpu()


def make_lstm(cfg: BenchConfig, impl: str) -> gluon.HybridBlock:
    """The LSTM stack of ``impl`` for ``cfg`` (no dropout, zero begin states)."""
    common = {"layout": cfg.layout, "input_size": cfg.input_size}
    if impl == "mxlstm-kernel":  # the fused path on mxlstm's own CPU kernel
        os.environ["MXLSTM_KERNEL"] = "1"
        from mxlstm import kernels
        if kernels.status():
            raise RuntimeError(f"mxlstm kernel unavailable: {kernels.status()}")
        return mxlstm.LSTM(cfg.hidden_size, cfg.num_layers, fused=True, **common)
    if impl == "mxlstm-fused":  # the fused path on MXNet's RNN operator
        os.environ["MXLSTM_KERNEL"] = "0"
        return mxlstm.LSTM(cfg.hidden_size, cfg.num_layers, fused=True, **common)
    if impl == "mxlstm-gates":
        return mxlstm.LSTM(cfg.hidden_size, cfg.num_layers, fused=False, **common)
    if impl == "mxnet-gluon":
        return gluon.rnn.LSTM(cfg.hidden_size, cfg.num_layers, **common)
    raise ValueError(f"not an MXNet impl: {impl!r}")


class BenchNet(gluon.HybridBlock):
    """LM: embedding -> LSTM -> dense to the vocabulary at every step; otherwise
    LSTM -> last step -> dense."""

    def __init__(self, cfg: BenchConfig, impl: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        self.time_axis = 0 if cfg.layout == "TNC" else 1
        with self.name_scope():
            if cfg.task == "lm":
                self.embed = nn.Embedding(cfg.vocab_size, cfg.input_size)
            self.lstm = make_lstm(cfg, impl)
            self.head = nn.Dense(cfg.head_size, flatten=False, in_units=cfg.hidden_size)

    def hybrid_forward(self, F, x):
        if self.cfg.task == "lm":
            x = self.embed(x)
        out = self.lstm(x)
        if self.cfg.task != "lm":  # slice_axis, not SequenceLast (segfaults in training)
            out = F.squeeze(F.slice_axis(out, axis=self.time_axis, begin=-1, end=None),
                            axis=self.time_axis)
        return self.head(out)


class WithLoss(gluon.HybridBlock):
    """``loss(net(x), y)`` per sample: softmax CE (LM, classifier) or MSE (regression).
    An mxlstm LM computes its token cross-entropy as ``mxlstm train`` does
    (:func:`mxlstm.kernels.loss.softmax_nll`: the kernel's fused operator where it is
    built); bare MXNet uses Gluon's ``SoftmaxCrossEntropyLoss``."""

    def __init__(self, net: BenchNet, impl: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cfg = net.cfg
        self.batch_axis = 1 if cfg.task == "lm" and cfg.layout == "TNC" else 0
        self.mxlstm_nll = cfg.task == "lm" and impl.startswith("mxlstm")
        with self.name_scope():
            self.net = net
            if cfg.task == "regress":
                self.loss = gluon.loss.L2Loss()
            else:
                self.loss = gluon.loss.SoftmaxCrossEntropyLoss(batch_axis=self.batch_axis)

    def hybrid_forward(self, F, x, y):
        if self.mxlstm_nll:  # (T, N) or (N, T) token losses -> mean per sequence
            return F.mean(softmax_nll(F, self.net(x), y), axis=1 - self.batch_axis)
        return self.loss(self.net(x), y)


def _model(cfg: BenchConfig, impl: str, mode: str, params_file: str | None = None):
    """A fresh, initialised (or loaded) model: the net for inference, net + loss to train."""
    net = BenchNet(cfg, impl)
    if params_file:
        net.load_parameters(params_file, ctx=CTX)
    else:
        net.initialize(mx.init.Uniform(0.1), ctx=CTX)
    return net if mode == "infer" else WithLoss(net, impl)


def effective_static_shape(impl: str, static_shape: bool) -> bool:
    """The gate-level path never gets ``static_shape``: MXNet 1.9.1 computes wrong values
    there (``contrib.foreach`` after a matrix product) and mxlstm refuses it."""
    return static_shape and impl != "mxlstm-gates"


def build(cfg: BenchConfig, impl: str, mode: str, static_shape: bool = True
          ) -> tuple[Callable[[], Any], np.ndarray, Callable[..., np.ndarray | None]]:
    """A hybridized, synchronising step function for ``mode``, the output of its first call
    (train: the per-sample loss, before any update) and a function computing that output
    with the same initial parameters imperatively: the check that the hybridized graph
    computes the model. The check runs after timing, so it leaves the peak RSS alone."""
    mx.random.seed(SEED)
    np.random.seed(SEED)
    model = _model(cfg, impl, mode)
    x_np, y_np = make_batch(cfg)
    x = mx.nd.array(x_np, ctx=CTX, dtype="float32")
    y = mx.nd.array(y_np, ctx=CTX, dtype="float32")
    fd, params_file = tempfile.mkstemp(prefix="mxlstm-bench-", suffix=".params")
    os.close(fd)
    (model if mode == "infer" else model.net).save_parameters(params_file)
    model.hybridize(static_alloc=True, static_shape=static_shape)
    if mode == "infer":
        def step():
            out = model(x)
            mx.nd.waitall()
            return out
    else:
        trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})

        def step():
            with autograd.record():
                loss = model(x, y)
            loss.backward()
            trainer.step(cfg.batch_size)
            mx.nd.waitall()
            return loss

    def reference(compute: bool = True) -> np.ndarray | None:
        try:
            if not compute:  # only remove the saved parameters
                return None
            again = _model(cfg, impl, mode, params_file)
            return (again(x) if mode == "infer" else again(x, y)).asnumpy()
        finally:
            os.unlink(params_file)

    return step, step().asnumpy(), reference


def run(cfg: BenchConfig, impl: str, mode: str, steps: int, warmup: int, threads: int,
        static_shape: bool = True) -> dict[str, Any]:
    """Time ``steps`` steps (after the first call and ``warmup`` more), then check the
    first call against the imperative model; returns the JSON record."""
    static_shape = effective_static_shape(impl, static_shape)
    step, first, reference = build(cfg, impl, mode, static_shape)
    times, last = time_steps(step, steps, warmup)
    value = float(last.mean().asscalar())
    key = "loss" if mode == "train" else "output_mean"
    record = result_line(cfg, impl, mode, times, warmup, threads, **{key: value},
                         static_shape=static_shape, framework=f"mxnet {mx.__version__}",
                         python=platform.python_version(), numpy=np.__version__)
    record["check_max_abs_diff"] = float(np.abs(first - reference()).max())
    return record


# -- GEMM roof ---------------------------------------------------------------------------
def _time_call(fn, sync, min_time: float = 0.02, repeats: int = 5) -> float:
    """Best per-call seconds of ``fn`` over ``repeats`` blocks of at least ``min_time``."""
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    per_block = max(1, int(min_time / max(time.perf_counter() - start, 1e-7)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_block):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / per_block)
    return best


def gemm_seconds(g: Gemm, repeats: int = 5) -> dict[str, float]:
    """Seconds of one ``(m,k) x (k,n)`` product by numpy ``dot``, MXNet ``dot`` (BLAS) and
    MXNet ``FullyConnected`` (oneDNN)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((g.m, g.k), dtype=np.float32)
    b = rng.standard_normal((g.k, g.n), dtype=np.float32)
    c = np.empty((g.m, g.n), dtype=np.float32)
    ma, mb = mx.nd.array(a, ctx=CTX), mx.nd.array(b, ctx=CTX)
    mbt = mx.nd.array(np.ascontiguousarray(b.T), ctx=CTX)
    mc = mx.nd.empty((g.m, g.n), ctx=CTX)
    return {
        "numpy": _time_call(lambda: np.dot(a, b, out=c), lambda: None, repeats=repeats),
        "mx_dot": _time_call(lambda: mx.nd.dot(ma, mb, out=mc), mx.nd.waitall,
                             repeats=repeats),
        "mx_fc": _time_call(lambda: mx.nd.FullyConnected(ma, mbt, no_bias=True,
                                                         num_hidden=g.n, out=mc),
                            mx.nd.waitall, repeats=repeats),
    }


def roof(cfg: BenchConfig, threads: int, repeats: int = 5) -> dict[str, Any]:
    """Time every GEMM of a training and an inference step; the roof of a mode is its
    counted FLOPs over the summed best times (per product, the fastest backend)."""
    record: dict[str, Any] = {"config": cfg.name, "impl": "roof", "threads": threads,
                              "framework": f"mxnet {mx.__version__}", "numpy": np.__version__}
    cache: dict[tuple[int, int, int], dict[str, float]] = {}
    for mode, gemms in (("train", train_gemms(cfg)), ("infer", forward_gemms(cfg))):
        total = {"best": 0.0, "numpy": 0.0, "mx_dot": 0.0, "mx_fc": 0.0}
        rows = []
        for g in gemms:
            key = (g.m, g.k, g.n)
            if key not in cache:
                cache[key] = gemm_seconds(g, repeats)
            secs = cache[key]
            best = min(secs.values())
            for name, value in (("best", best), *secs.items()):
                total[name] += value * g.count
            rows.append({"gemm": g.name, "m": g.m, "k": g.k, "n": g.n, "count": g.count,
                         "best_gflops": 2 * g.m * g.k * g.n / best / 1e9,
                         "backend": min(secs, key=secs.get)})
        flops = sum(g.flops for g in gemms)
        record[mode] = {"flops": flops, "gemm_s": total["best"],
                        "roof_gflops": flops / total["best"] / 1e9,
                        "backend_gflops": {k: flops / v / 1e9 for k, v in total.items()
                                           if k != "best"},
                        "gemms": rows}
    return record


# -- profiler ------------------------------------------------------------------------------
def profile(cfg: BenchConfig, impl: str, steps: int, warmup: int, trace: str,
            mode: str = "train", static_shape: bool = True
            ) -> tuple[list[dict[str, Any]], str]:
    """Per-operator totals over ``steps`` profiled steps (after ``warmup`` unprofiled ones),
    largest first, and ``mx.profiler.dumps()``'s table; the chrome trace goes to ``trace``.
    Only the ``operator`` domain is ranked (C API calls such as ``MXNDArrayWaitAll`` only
    wait for operators)."""
    step, _, reference = build(cfg, impl, mode, effective_static_shape(impl, static_shape))
    reference(compute=False)
    time_steps(step, 0, warmup)
    return profile_steps(step, steps, trace)


def profile_steps(step: Callable[[], Any], steps: int, trace: str
                  ) -> tuple[list[dict[str, Any]], str]:
    """``steps`` calls of ``step`` (warmed up by the caller) under ``mx.profiler``: the
    per-operator totals, largest first, and ``mx.profiler.dumps()``'s table; the chrome
    trace goes to ``trace`` (a file the caller owns: never ``os.devnull``, which the
    profiler replaces with a regular file)."""
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=trace)
    mx.profiler.set_state("run")
    time_steps(step, steps, 0)
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    mx.profiler.dump()
    table = mx.profiler.dumps()
    stats = json.loads(mx.profiler.dumps(format="json"))
    rows = [{"op": name, "count": s["Count"], "total_ms": s["Total"],
             "avg_ms": s["Total"] / max(s["Count"], 1)}
            for name, s in stats.get("Time", {}).get("operator", {}).items()]
    rows.sort(key=lambda r: r["total_ms"], reverse=True)
    return rows, table


def format_profile(rows: list[dict[str, Any]], steps: int, top: int) -> str:
    """The ``top`` operators: calls, total ms, ms per step, µs per call, share of all
    operator time. Nested operators (``_foreach`` and its body) are counted each."""
    total = sum(r["total_ms"] for r in rows) or 1.0
    lines = [f"{'operator':<36} {'calls':>7} {'total ms':>9} {'ms/step':>8} "
             f"{'us/call':>8} {'share':>6}"]
    for r in rows[:top]:
        lines.append(f"{r['op'][:36]:<36} {r['count']:>7} {r['total_ms']:>9.1f} "
                     f"{r['total_ms'] / steps:>8.2f} {1000 * r['avg_ms']:>8.1f} "
                     f"{r['total_ms'] / total:>6.1%}")
    lines.append(f"{'all operators':<36} {sum(r['count'] for r in rows):>7} {total:>9.1f} "
                 f"{total / steps:>8.2f}")
    return "\n".join(lines)

"""What is measured: the benchmark configurations, their data, GEMMs and FLOP count.

Pure Python plus numpy: both runners load this file, the PyTorch one by path (it runs in
``.venv-torch`` where the ``mxlstm`` package, which needs mxnet, cannot be imported).

FLOP count (one step of a batch; multiply-add = 2 FLOPs; elementwise work, the embedding
lookup, softmax and the optimizer update are not counted):

* forward, per LSTM layer: the input projection ``(T*N, C) x (C, 4H)`` once and the
  recurrent product ``(N, H) x (H, 4H)`` at each of the ``T`` steps, i.e.
  ``2 * T * N * 4H * (C + H)``; ``C`` is the layer's input size (the embedding or input
  size for layer 0, ``H`` above);
* forward, head: the LM decoder ``(T*N, H) x (H, V)``; the classifier/regression head on
  the last step ``(N, H) x (H, K)``;
* training step = 3 x forward: every forward product ``Y = X W`` has two backward
  products of the same size, ``dX = dY W^T`` and ``dW = X^T dY`` (also counted where the
  input needs no gradient, so the count is a convention, slightly generous for layer 0
  of the classifier and the regression model);
* inference = forward.

The GEMM roof times exactly these products (:func:`train_gemms`, :func:`forward_gemms`)
with the fastest single-precision ``dot`` available, so ``share of roof = time those GEMMs
alone take / measured step time``.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

IMPLS = ("mxlstm-kernel", "mxlstm-fused", "mxlstm-gates", "mxnet-gluon", "torch")
MXNET_IMPLS = IMPLS[:4]
MODES = ("train", "infer")
SEED = 1234


@dataclass(frozen=True)
class BenchConfig:
    """One model and batch shape. ``input_size`` is the embedding size for LMs."""

    name: str
    task: str  # 'lm' (embedding -> LSTM -> decoder, CE), 'classify' (CE), 'regress' (MSE)
    num_layers: int
    input_size: int
    hidden_size: int
    batch_size: int
    seq_len: int
    vocab_size: int = 0
    num_outputs: int = 0
    layout: str = "NTC"
    train_steps: int = 20
    infer_steps: int = 40
    warmup: int = 3

    @property
    def tokens_per_step(self) -> int:
        """``batch * T``: tokens (time steps of all sequences) per step."""
        return self.batch_size * self.seq_len

    @property
    def head_size(self) -> int:
        """Outputs of the dense layer after the LSTM."""
        return self.vocab_size if self.task == "lm" else self.num_outputs

    def steps(self, mode: str) -> int:
        """Default number of timed steps for ``mode``."""
        return self.train_steps if mode == "train" else self.infer_steps

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIGS: dict[str, BenchConfig] = {c.name: c for c in (
    BenchConfig("LM-small", "lm", 2, 200, 200, 32, 35, vocab_size=10_000, layout="TNC",
                train_steps=30, infer_steps=60),
    BenchConfig("LM-medium", "lm", 2, 650, 650, 32, 35, vocab_size=10_000, layout="TNC",
                train_steps=10, infer_steps=25),
    BenchConfig("classifier", "classify", 1, 28, 128, 128, 28, num_outputs=10,
                train_steps=60, infer_steps=150),
    BenchConfig("long", "regress", 1, 2, 128, 64, 1000, num_outputs=1,
                train_steps=6, infer_steps=12, warmup=2),
)}


def get_config(name: str) -> BenchConfig:
    """The configuration called ``name`` (case-insensitive); KeyError lists the choices."""
    for key, cfg in CONFIGS.items():
        if key.lower() == name.lower():
            return cfg
    raise KeyError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")


def quick(cfg: BenchConfig) -> BenchConfig:
    """A few steps only, for smoke tests."""
    return replace(cfg, train_steps=3, infer_steps=3, warmup=1)


# -- GEMMs and FLOPs -----------------------------------------------------------------
@dataclass(frozen=True)
class Gemm:
    """``count`` products ``(m, k) x (k, n)``."""

    name: str
    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


def forward_gemms(cfg: BenchConfig) -> list[Gemm]:
    """The matrix products of one forward pass (see the module docstring)."""
    tn, gates = cfg.tokens_per_step, 4 * cfg.hidden_size
    gemms, size = [], cfg.input_size
    for layer in range(cfg.num_layers):
        gemms.append(Gemm(f"l{layer} input projection", tn, size, gates))
        gemms.append(Gemm(f"l{layer} recurrent", cfg.batch_size, cfg.hidden_size, gates,
                          cfg.seq_len))
        size = cfg.hidden_size
    rows = tn if cfg.task == "lm" else cfg.batch_size
    gemms.append(Gemm("decoder" if cfg.task == "lm" else "head", rows, cfg.hidden_size,
                      cfg.head_size))
    return gemms


def backward_gemms(gemms: list[Gemm]) -> list[Gemm]:
    """``dX = dY W^T`` per product and ``dW = X^T dY`` summed over repeats in one product."""
    out = []
    for g in gemms:
        out.append(Gemm(g.name + " dX", g.m, g.n, g.k, g.count))
        out.append(Gemm(g.name + " dW", g.k, g.m * g.count, g.n))
    return out


def train_gemms(cfg: BenchConfig) -> list[Gemm]:
    """Forward and backward products of one training step (3 x the forward FLOPs)."""
    fwd = forward_gemms(cfg)
    return fwd + backward_gemms(fwd)


def gemms_for(cfg: BenchConfig, mode: str) -> list[Gemm]:
    return train_gemms(cfg) if mode == "train" else forward_gemms(cfg)


def step_flops(cfg: BenchConfig, mode: str) -> int:
    """Counted FLOPs of one ``mode`` step."""
    return sum(g.flops for g in gemms_for(cfg, mode))


def lstm_forward_flops(cfg: BenchConfig) -> int:
    """Closed form of the LSTM layers' forward FLOPs: ``sum 2 T N 4H (C_l + H)``."""
    total, size = 0, cfg.input_size
    for _ in range(cfg.num_layers):
        total += 2 * cfg.tokens_per_step * 4 * cfg.hidden_size * (size + cfg.hidden_size)
        size = cfg.hidden_size
    return total


# -- shared by the runners -------------------------------------------------------------
def make_batch(cfg: BenchConfig, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch ``(x, y)`` as numpy arrays in ``cfg.layout`` (identical for all impls).

    LM: token ids ``(T, N)`` (or ``(N, T)``) and next tokens; classifier: ``(N, T, C)`` and
    class ids ``(N,)``; regression: ``(N, T, C)`` and targets ``(N, 1)``.
    """
    rng = np.random.default_rng(seed)
    n, t = cfg.batch_size, cfg.seq_len
    if cfg.task == "lm":
        shape = (t, n) if cfg.layout == "TNC" else (n, t)
        return (rng.integers(0, cfg.vocab_size, shape).astype(np.int64),
                rng.integers(0, cfg.vocab_size, shape).astype(np.int64))
    shape = (t, n, cfg.input_size) if cfg.layout == "TNC" else (n, t, cfg.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    if cfg.task == "classify":
        return x, rng.integers(0, cfg.num_outputs, (n,)).astype(np.int64)
    return x, rng.standard_normal((n, cfg.num_outputs)).astype(np.float32)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_steps(step: Callable[[], Any], steps: int, warmup: int) -> tuple[list[float], Any]:
    """Run ``warmup`` untimed then ``steps`` timed calls of ``step`` (which synchronises).

    Returns the step times in seconds and the last call's return value.
    """
    value = None
    for _ in range(warmup):
        value = step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        value = step()
        times.append(time.perf_counter() - start)
    return times, value


def result_line(cfg: BenchConfig, impl: str, mode: str, times: list[float], warmup: int,
                threads: int, **extra: Any) -> dict[str, Any]:
    """The JSON record a ``run`` process prints."""
    med = statistics.median(times)
    return {
        "config": cfg.name, "impl": impl, "mode": mode, "steps": len(times),
        "warmup": warmup, "threads": threads, "median_s": med, "min_s": min(times),
        "max_s": max(times), "tokens_per_step": cfg.tokens_per_step,
        "tokens_per_s": cfg.tokens_per_step / med, "step_flops": step_flops(cfg, mode),
        "gflops": step_flops(cfg, mode) / med / 1e9, "peak_rss_mib": round(peak_rss_mib(), 1),
        **extra,
    }

"""In-process interleaved A/B of the series preset's training step: with and without the
second (fine) convolutional branch (``model.conv_fine_steps``).

``python -m mxlstm.bench.series_step_ab [REPEATS]`` (default 21). For ACSF1's and
OSULeaf's shapes (batch 16, T = 1460 and 427, one channel) both models of the ``uea``
preset are built, hybridized and warmed up; each repeat times one forward + backward of
each back to back. Prints the median step time of each and their ratio. One process,
ratios only: meant for a shared machine.

``python -m mxlstm.bench.series_step_ab train [REPEATS] [--profile]``: the mean and median
training step (with the Adam update) of the preset's model alone in the process, for each
shape, and with ``--profile`` MXNet's per-operator times; run it alternately on two
versions of the code to compare them (``docs/benchmarks.md``: the session-8 convolution
masking against session 9's). The A/B above does not show that change.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import mxnet as mx

from mxlstm.bench.configs import time_steps
from mxlstm.bench.mxnet_runner import format_profile, profile_steps
from mxlstm.config import apply_overrides
from mxlstm.tasks import default_config
from mxlstm.tasks.base import sequence_model

SHAPES = {"ACSF1": 1460, "OSULeaf": 427}


def _model(length: int, fine: bool):
    cfg = apply_overrides(default_config("uea"),
                          {"model.conv_fine_steps": 512 if fine else -1}, "bench")
    mx.random.seed(0)
    model = sequence_model(cfg, 10, input_size=1, max_length=length)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    return model


def _step(model, x, lengths, y, loss) -> float:
    start = time.perf_counter()
    with mx.autograd.record():
        out = loss(model(x, lengths), y).mean()
    out.backward()
    mx.nd.waitall()
    return time.perf_counter() - start


def training_step_ms(length: int, repeats: int,
                     profile: bool = False) -> tuple[float, float]:
    """``(mean, median)`` ms of one training step (forward, backward, Adam update) of the ``uea``
    preset's model alone in the process, batch 16 of ``length`` steps: the figure to
    compare between two versions of the code, run alternately in fresh processes. With
    ``profile``, MXNet's per-operator totals over 10 more steps are printed."""
    model = _model(length, True)
    trainer = mx.gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 1e-3})
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    x = mx.nd.random.normal(shape=(16, length, 1))
    lengths, y = mx.nd.full((16,), length), mx.nd.array([k % 10 for k in range(16)])

    def step() -> None:
        with mx.autograd.record():
            out = loss(model(x, lengths), y).mean()
        out.backward()
        trainer.step(16)
        mx.nd.waitall()

    times, _ = time_steps(step, repeats, 5)  # warm-up: graph built, memory planned
    if profile:
        with tempfile.TemporaryDirectory() as scratch:  # the profiler writes its trace
            rows, _ = profile_steps(step, 10, os.path.join(scratch, "profile.json"))
        print(format_profile(rows, 10, 12), flush=True)
    return statistics.mean(times) * 1000, statistics.median(times) * 1000


def main(argv: list[str]) -> None:
    if argv and argv[0] == "train":  # series_step_ab train [REPEATS] [--profile]
        profile = "--profile" in argv
        numbers = [a for a in argv[1:] if a != "--profile"]
        repeats = int(numbers[0]) if numbers else 21
        for name, length in SHAPES.items():
            mean, median = training_step_ms(length, repeats, profile)
            print(f"{name} (B16, T{length}): training step mean {mean:.1f} ms, median "
                  f"{median:.1f} ms ({repeats} steps, the preset's model alone)", flush=True)
        return
    repeats = int(argv[0]) if argv else 21
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for name, length in SHAPES.items():
        x = mx.nd.random.normal(shape=(16, length, 1))
        lengths, y = mx.nd.full((16,), length), mx.nd.zeros((16,))
        models = {"coarse only": _model(length, False), "with fine": _model(length, True)}
        for model in models.values():  # warm-up: graph built, memory planned
            _step(model, x, lengths, y, loss)
            _step(model, x, lengths, y, loss)
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(repeats):
            for key, model in models.items():
                times[key].append(_step(model, x, lengths, y, loss))
        median = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"{name} (B16, T{length}): coarse only {median['coarse only']:.1f} ms, with "
              f"fine {median['with fine']:.1f} ms a step; ratio "
              f"{median['with fine'] / median['coarse only']:.2f} (n={repeats})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

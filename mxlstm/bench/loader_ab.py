"""In-process interleaved A/B of a task's training loader: batch-level augmentation
(:mod:`mxlstm.data.augment_batch`) against the per-sample path.

``python -m mxlstm.bench.loader_ab [TASK] [REPEATS]`` (default digits, 5). Each repeat
iterates one epoch of the preset's training loader in each mode back to back and records
``time(per sample) / time(batch)``; prints ms a batch per mode and the median (min, max)
ratio. One process, ratios only: meant for a shared machine.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from unittest import mock

from mxlstm.data.augment import AugmentedDataset
from mxlstm.tasks import prepare, user_config


def _per_sample(self, batchify_fn):
    return self, batchify_fn


def epoch_ms(cfg, per_sample: bool) -> float:
    """Milliseconds a batch to iterate one epoch of ``cfg``'s training loader."""
    patch = mock.patch.object(AugmentedDataset, "for_loader", _per_sample)
    with patch if per_sample else contextlib.nullcontext():
        loader = prepare(cfg).train_loader
    start, count = time.perf_counter(), 0
    for _ in loader:
        count += 1
    return (time.perf_counter() - start) / count * 1000


def main(argv: list[str]) -> None:
    task = argv[0] if argv else "digits"
    repeats = int(argv[1]) if len(argv) > 1 else 5
    cfg = user_config(task)
    times: dict[str, list[float]] = {"batch": [], "sample": []}
    for _ in range(repeats):
        times["sample"].append(epoch_ms(cfg, per_sample=True))
        times["batch"].append(epoch_ms(cfg, per_sample=False))
    ratios = [s / b for s, b in zip(times["sample"], times["batch"])]
    print(f"{task} training loader: per sample {statistics.median(times['sample']):.2f} ms "
          f"a batch, batch-level {statistics.median(times['batch']):.2f} ms; per-sample / "
          f"batch-level median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}, n={repeats})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

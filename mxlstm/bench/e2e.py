"""End-to-end training throughput against the bare model step (``python -m mxlstm.bench e2e``).

Target: ``mxlstm train`` runs at >= 0.9x the throughput of its own model step, i.e. the
data pipeline, metrics and logging cost at most ~10 %. Per task, fresh processes
alternate A B A B ... (same thread variables, :func:`mxlstm.bench.driver.bench_env`):

* **A, the trainer**: ``python -m mxlstm train --task T`` with the task's preset and
  ``train.max_batches=N``, ``train.epochs=1+M``. Epoch 1 is warm-up (graph build, first
  use of every batch shape, oneDNN primitives); the figure is the trainer's own
  ``sequences_per_second`` of epochs 2..1+M from ``metrics.jsonl`` (sequences / seconds
  summed over those epochs), which covers loading, augmentation, batching, the step, loss
  accumulation, tqdm and logging, and nothing else (validation and checkpoints are
  outside it). ``M = ceil(N / batches per epoch)``, so at least ``N`` batches are timed.
* **B, the bare step**: the same preparation (``tasks.prepare``, ``runs.init_model``,
  ``Fitter.make_trainer``), then ``Fitter.queued_steps`` (forward, loss, backward, clip,
  update; each step's loss read back once the next is queued: the trainer's own loop) on
  the very batches A trains on (same seed and epochs, so
  the same order, augmentation and shapes), all loaded into memory before the clock
  starts, in A's schedule: the warm-up epoch's batches untimed, then per timed epoch an
  untimed validation pass (``Fitter.evaluate``, as ``fit`` runs one after every epoch;
  switching the hybridized model between training and inference and back costs the
  next epoch a few per cent) and the epoch's batches, timed, ending with
  ``mx.nd.waitall()``. Figure: sequences / seconds, the same estimator as A's. With
  ``--one-batch`` B steps on the first of those batches each time instead (only
  meaningful for tasks whose batches all have one shape: with length buckets the shape,
  and so the cost, differs from batch to batch).

The ratio A/B is taken within each pair and summarised as median (min–max). Where the time
goes: the trainer's overhead per batch (A's seconds per batch − B's) next to the loader
alone, timed by B while it loads the batches (``loader_ms_per_batch``: reading,
augmentation, batching). The overhead can be smaller than the loader time: the trainer
loads the next batch while the engine still runs the previous optimizer update.

Worker modes (run by the driver, one JSON line each)::

    python -m mxlstm.bench.e2e plan --task T --batches N [--set k=v ...]
    python -m mxlstm.bench.e2e step --task T --batches N --epochs E [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxlstm.bench.report import format_spread, spread

if TYPE_CHECKING:
    from mxlstm.config import RunConfig

TARGET = 0.9
DEFAULT_TASKS = ("lm", "text", "digits")
DEFAULT_BATCHES = 80
WARMUP_EPOCHS = 1  # trainer epochs left out of A's figure

Runner = Callable[[list[str], dict[str, str], float], dict[str, Any]]


# -- configuration shared by A and B ----------------------------------------------------
def overrides(task: str, batches: int, epochs: int | None = None,
              extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ``--set`` keys both A and B use on top of the task preset: one model (a preset's
    seed ensemble trains its members one after another, each at this speed)."""
    from mxlstm.tasks import ignored_keys

    out = {"train.max_batches": str(batches)}
    if "train.ensemble" not in ignored_keys(task):
        out["train.ensemble"] = "1"
    if epochs is not None:
        out["train.epochs"] = str(epochs)
    out.update(extra or {})
    return out


def run_config(task: str, settings: dict[str, str]) -> RunConfig:
    """The task's preset with ``settings`` applied, exactly as ``mxlstm train --set`` does."""
    from mxlstm.config import apply_overrides
    from mxlstm.tasks import default_config

    return apply_overrides(default_config(task), settings, "command line")


def measured_epochs(batches: int, batches_per_epoch: int) -> int:
    """Epochs after the warm-up epoch needed to time at least ``batches`` batches."""
    return max(1, math.ceil(batches / max(1, batches_per_epoch)))


def describe_model(cfg: RunConfig) -> str:
    """A short description of the preset's model and batch."""
    m, t = cfg.model, cfg.train
    cell = f"{m.num_layers}×{m.cell.upper()} {m.hidden_size}" + (
        " bidirectional" if m.bidirectional else "")
    return f"{cell}, batch {t.batch_size}"


def plan(task: str, batches: int, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Batches per epoch of ``task`` (with ``train.max_batches=batches``) and the number of
    trainer epochs A runs (one warm-up epoch + the measured ones)."""
    from mxlstm import tasks
    from mxlstm.training.trainer import seed_everything

    cfg = run_config(task, overrides(task, batches, extra=extra))
    seed_everything(cfg.train.seed)
    prepared = tasks.prepare(cfg)
    per_epoch = int(prepared.steps_per_epoch)
    measured = measured_epochs(batches, per_epoch)
    return {"task": task, "role": "plan", "batches": batches, "batches_per_epoch": per_epoch,
            "measured_epochs": measured, "epochs": WARMUP_EPOCHS + measured,
            "measured_batches": measured * per_epoch, "model": describe_model(cfg)}


def set_arguments(settings: dict[str, str] | None) -> list[str]:
    """``['--set', 'key=value', ...]`` for a command line."""
    return [arg for key, value in (settings or {}).items() for arg in ("--set", f"{key}={value}")]


# -- A: the real trainer ------------------------------------------------------------------
def trainer_command(task: str, epochs: int, batches: int, out: str | Path,
                    extra: dict[str, str] | None = None) -> list[str]:
    """``python -m mxlstm train`` as a user runs it, with A's keys set."""
    return [sys.executable, "-m", "mxlstm", "train", "--task", task, "--out", str(out),
            *set_arguments(overrides(task, batches, epochs, extra))]


def trainer_record(run_dir: str | Path, warmup_epochs: int = WARMUP_EPOCHS) -> dict[str, Any]:
    """A's figure from ``run_dir/metrics.jsonl``: sequences / seconds over the epochs after
    ``warmup_epochs`` (the trainer's own ``sequences_per_second`` and ``seconds``)."""
    path = Path(run_dir) / "metrics.jsonl"
    epochs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    if len(epochs) <= warmup_epochs:
        raise ValueError(f"{path}: {len(epochs)} epoch(s), need more than {warmup_epochs}")
    timed = epochs[warmup_epochs:]
    seconds = sum(r["seconds"] for r in timed)
    items = round(sum(r["sequences_per_second"] * r["seconds"] for r in timed))
    batches = timed[-1]["step"] - epochs[warmup_epochs - 1]["step"] if warmup_epochs \
        else timed[-1]["step"]
    return {"role": "trainer", "sequences_per_s": items / seconds, "seconds": seconds,
            "items": items, "batches": batches, "epochs": len(timed),
            "warmup_sequences_per_s": epochs[0]["sequences_per_second"],
            "train_loss": timed[-1]["train_loss"]}


def run_trainer(task: str, epochs: int, batches: int, env: dict[str, str], timeout: float,
                runner: Runner, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """One A process in a temporary run directory (removed afterwards)."""
    tmp = tempfile.mkdtemp(prefix="mxlstm-e2e-")
    try:
        out = Path(tmp) / "run"
        rec = runner(trainer_command(task, epochs, batches, out, extra), env, timeout)
        if "error" in rec:
            return {"role": "trainer", "error": rec["error"]}
        try:
            return trainer_record(out)
        except (OSError, ValueError, KeyError) as err:
            return {"role": "trainer", "error": f"metrics.jsonl: {err}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- B: the bare model step ------------------------------------------------------------------
def _signature(batch) -> tuple:
    return tuple(tuple(a.shape) for a in batch if hasattr(a, "shape"))


def bare_step(task: str, batches: int, epochs: int, extra: dict[str, str] | None = None,
              one_batch: bool = False) -> dict[str, Any]:
    """B: ``Fitter.queued_steps`` on A's batches held in memory, in A's epoch schedule (see
    the module docstring); times the timed epochs' steps and, separately, their loading."""
    import mxnet as mx

    from mxlstm import tasks
    from mxlstm.runs import init_model
    from mxlstm.training.trainer import Fitter, parse_contexts, seed_everything

    cfg = run_config(task, overrides(task, batches, epochs, extra))
    contexts = parse_contexts(cfg.train.ctx)
    seed_everything(cfg.train.seed)
    prepared = tasks.prepare(cfg)
    init_model(prepared, contexts)
    loader = prepared.train_loader
    limit = cfg.train.max_batches or None

    def load(epoch: int) -> list:
        """The batches A's loop gets in ``epoch`` (0-based)."""
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        got = []
        for batch in loader:
            got.append(batch)
            if limit and len(got) >= limit:
                break
        return got

    warmup = [load(epoch) for epoch in range(WARMUP_EPOCHS)]
    start = time.perf_counter()
    timed = [load(epoch) for epoch in range(WARMUP_EPOCHS, epochs)]
    mx.nd.waitall()
    loader_s = time.perf_counter() - start
    count = sum(len(b) for b in timed)
    if one_batch:
        first = timed[0][0]
        warmup, timed = ([[first] * len(b) for b in part] for part in (warmup, timed))
    shapes = {_signature(b) for part in (warmup, timed) for epoch in part for b in epoch}
    with tempfile.TemporaryDirectory(prefix="mxlstm-e2e-") as tmp:
        fitter = Fitter(prepared.model, prepared.objective, cfg.train, tmp, contexts)
        fitter.make_trainer(prepared.steps_per_epoch)
        step, seconds, items, total, n = 0, 0.0, 0, 0.0, 0.0
        for epoch, epoch_batches in enumerate(warmup + timed):
            if epoch:  # as in fit(): every epoch after the first follows a validation pass
                fitter.evaluate(prepared.valid_loader)
            seed_everything(cfg.train.seed, epoch)
            prepared.objective.begin_epoch(contexts)
            start = time.perf_counter()
            losses = [done for _, done in fitter.queued_steps(epoch_batches, step)
                      if done is not None]  # as the trainer steps, minus loading and tqdm
            step += len(epoch_batches)
            if epoch >= WARMUP_EPOCHS:
                items += sum(batch[0].shape[0] for batch in epoch_batches)
                for loss, k in losses:
                    if k:
                        total, n = total + loss, n + k
            mx.nd.waitall()
            if epoch >= WARMUP_EPOCHS:
                seconds += time.perf_counter() - start
    return {"task": task, "role": "step", "sequences_per_s": items / seconds,
            "seconds": seconds, "items": items, "batches": count, "epochs": len(timed),
            "one_batch": one_batch, "distinct_shapes": len(shapes),
            "warmup_steps": sum(len(b) for b in warmup),
            "loader_ms_per_batch": 1000 * loader_s / max(count, 1),
            "train_loss": total / max(n, 1)}


def step_command(task: str, batches: int, epochs: int, extra: dict[str, str] | None = None,
                 one_batch: bool = False) -> list[str]:
    """The B process."""
    return [sys.executable, "-m", "mxlstm.bench.e2e", "step", "--task", task,
            "--batches", str(batches), "--epochs", str(epochs), *set_arguments(extra),
            *(["--one-batch"] if one_batch else [])]


def plan_command(task: str, batches: int, extra: dict[str, str] | None = None) -> list[str]:
    """The process that plans a task (batches per epoch, trainer epochs)."""
    return [sys.executable, "-m", "mxlstm.bench.e2e", "plan", "--task", task,
            "--batches", str(batches), *set_arguments(extra)]


# -- statistics and report ------------------------------------------------------------------
def verdict(ratio: float | None, target: float = TARGET) -> str:
    """``'meets'`` or ``'misses by X (Y %)'`` for a median ratio; ``'no data'``."""
    if ratio is None:
        return "no data"
    if ratio >= target:
        return "meets"
    return f"misses by {target - ratio:.2f} ({(target - ratio) / target:.0%})"


def summarize(task: str, info: dict[str, Any], pairs: list[dict[str, Any]],
              threads: int) -> dict[str, Any]:
    """The per-task record: medians over pairs, per-pair ratios, verdict, overhead split."""
    good = [p for p in pairs if "error" not in p["trainer"] and "error" not in p["step"]]
    a = [p["trainer"]["sequences_per_s"] for p in good]
    b = [p["step"]["sequences_per_s"] for p in good]
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    overhead = [1000 * (p["trainer"]["seconds"] / p["trainer"]["batches"]
                        - p["step"]["seconds"] / p["step"]["batches"]) for p in good]
    ratio = spread(ratios)
    return {
        "task": task, "target": TARGET, "threads": threads, "model": info.get("model"),
        "batches_per_epoch": info.get("batches_per_epoch"),
        "trainer_epochs": info.get("epochs"), "measured_batches": info.get("measured_batches"),
        "pairs": len(good), "trainer_sequences_per_s": spread(a),
        "step_sequences_per_s": spread(b), "ratio": ratio,
        "verdict": verdict(ratio["median"] if ratio else None),
        "overhead_ms_per_batch": spread(overhead),
        "loader_ms_per_batch": spread(p["step"]["loader_ms_per_batch"] for p in good),
        "step_ms_per_batch": spread(1000 * p["step"]["seconds"] / p["step"]["batches"]
                                    for p in good),
        "load_average": spread(x for p in pairs for x in p.get("load_average", [])),
        "errors": [p[k]["error"] for p in pairs for k in ("trainer", "step")
                   if "error" in p[k]] + ([info["error"]] if "error" in info else []),
        "runs": pairs,
    }


def markdown(results: list[dict[str, Any]], command: str) -> str:
    """The table for ``docs/benchmarks.md``."""
    loads = spread(x for r in results for p in r["runs"] for x in p.get("load_average", []))
    threads = results[0]["threads"] if results else "?"
    lines = [
        f"End-to-end `mxlstm train` vs the bare model step (target ≥ {TARGET:g}×); command: "
        f"`{command}`; threads per process: {threads}"
        + (f"; 1-minute load average before A / after B: {loads['min']:.1f}–{loads['max']:.1f}"
           if loads else "") + ".", "",
        "| task | model | timed batches × pairs | trainer seq/s (A) | bare step seq/s (B) | "
        "A/B per pair | verdict | step ms/batch | overhead ms/batch | of which loading |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['model'] or '–'} | {r['measured_batches'] or '–'} × "
            f"{r['pairs']} | {format_spread(r['trainer_sequences_per_s'])} | "
            f"{format_spread(r['step_sequences_per_s'])} | {format_spread(r['ratio'], '{:.2f}')} | "
            f"{r['verdict']} | {format_spread(r['step_ms_per_batch'], '{:.1f}')} | "
            f"{format_spread(r['overhead_ms_per_batch'], '{:.1f}')} | "
            f"{format_spread(r['loader_ms_per_batch'], '{:.1f}')} |")
    lines += [
        "",
        "A: `python -m mxlstm train --task T` (preset model, batch size, optimizer, clipping; "
        "tqdm on), the trainer's own sequences/s over the epochs after the first "
        "(warm-up), from `metrics.jsonl`. B: `Fitter.queued_steps` (the trainer's step "
        "loop) on the same batches held in memory, in the trainer's schedule (an untimed "
        "warm-up epoch; a validation pass "
        "before each timed epoch), ending with `mx.nd.waitall()`. "
        "Fresh processes, A B A B …; cells: median (min–max) over pairs. Overhead = trainer "
        "time per batch − bare step time per batch; loading = the task's loader alone "
        "(reading, augmentation, batching) per batch, which the trainer partly overlaps "
        "with the previous asynchronous optimizer update.",
    ]
    return "\n".join(lines) + "\n"


def drive(task_names: list[str], pairs: int, batches: int, threads: int, env: dict[str, str],
          runner: Runner, timeout: float = 1800.0, extra: dict[str, str] | None = None,
          one_batch: bool = False,
          log: Callable[[str], None] = lambda msg: None) -> list[dict[str, Any]]:
    """Plan every task, then run ``pairs`` interleaved A/B pairs of each; one summary per
    task (see :func:`summarize`)."""
    infos = {}
    for task in task_names:
        info = runner(plan_command(task, batches, extra), env, timeout)
        infos[task] = info
        log(f"{task}: " + (info.get("error") or
                           f"{info['batches_per_epoch']} batches/epoch, trainer runs "
                           f"{info['epochs']} epochs, {info['measured_batches']} timed"))
    records: dict[str, list[dict[str, Any]]] = {t: [] for t in task_names}
    for pair in range(pairs):
        for task in task_names:
            info = infos[task]
            if "error" in info:
                continue
            load = os.getloadavg()[0]
            a = run_trainer(task, info["epochs"], batches, env, timeout, runner, extra)
            b = runner(step_command(task, batches, info["epochs"], extra, one_batch), env,
                       timeout)
            records[task].append({"pair": pair, "trainer": a, "step": b,
                                  "load_average": [round(load, 2),
                                                   round(os.getloadavg()[0], 2)]})
            ratio = (a["sequences_per_s"] / b["sequences_per_s"]
                     if "error" not in a and "error" not in b else None)
            log(f"[pair {pair + 1}/{pairs}] {task}: trainer "
                f"{a.get('error') or format(a['sequences_per_s'], ',.1f')} seq/s, bare step "
                f"{b.get('error') or format(b['sequences_per_s'], ',.1f')} seq/s"
                + (f", ratio {ratio:.3f}" if ratio is not None else ""))
    return [summarize(t, infos[t], records[t], threads) for t in task_names]


# -- worker entry point --------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``plan`` / ``step`` worker modes; each prints one JSON line."""
    from mxlstm.config import parse_set_options

    parser = argparse.ArgumentParser(prog="python -m mxlstm.bench.e2e")
    parser.add_argument("mode", choices=("plan", "step"))
    parser.add_argument("--task", required=True)
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES)
    parser.add_argument("--epochs", type=int, help="trainer epochs (step mode)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--one-batch", action="store_true")
    args = parser.parse_args(argv)
    extra = parse_set_options(args.set)
    if args.mode == "plan":
        record = plan(args.task, args.batches, extra)
    else:
        if args.epochs is None or args.epochs <= WARMUP_EPOCHS:
            parser.error(f"step needs --epochs > {WARMUP_EPOCHS}")
        record = bare_step(args.task, args.batches, args.epochs, extra, args.one_batch)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

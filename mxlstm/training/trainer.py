"""The fit loop. It knows models only as Gluon blocks and tasks only as objectives.

One epoch: re-seed every RNG from ``(seed, epoch)`` -> batches split over the contexts
-> forward/backward under autograd -> all-reduce -> global-norm clip -> optimizer update
-> evaluation -> callbacks (:mod:`mxlstm.training.callbacks`: plateau decay, early
stopping, checkpoint) -> the metrics line. Because each epoch starts
from a state that is a pure function of the seed and the checkpoint, a resumed run ends
with the same parameters as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import gluonnlp
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from mxlstm.config import TrainConfig
from mxlstm.data.batching import to_context
from mxlstm.errors import ConfigError, TrainingError
from mxlstm.training.callbacks import Callback, default_callbacks
from mxlstm.training.checkpoint import checkpoint_epoch, find_checkpoint, load_checkpoint
from mxlstm.training.consensus import agree_on_start
from mxlstm.training.log import MetricsLog
from mxlstm.training.metrics import is_better
from mxlstm.training.objectives import Objective
from mxlstm.training.progress import Progress

log = logging.getLogger(__name__)


class PendingLoss:
    """The summed loss of a queued training step, read (waiting for the step) on demand."""

    def __init__(self, losses: list | None, count: float, step: int, fitter: Fitter | None,
                 total: float | None = None) -> None:
        self._losses, self.count, self.step, self._fitter = losses, count, step, fitter
        self._total = total

    @classmethod
    def done(cls, total: float, count: float) -> PendingLoss:
        return cls(None, count, 0, None, total)

    def result(self) -> tuple[float, float]:
        """``(summed loss, item count)``; raises :class:`TrainingError` for a non-finite
        loss (under ``train.nan_policy=stop``)."""
        if self._total is None:
            self._total = sum(float(loss.sum().asscalar()) for loss in self._losses)
            self._losses = None
            if not math.isfinite(self._total) and self._fitter.cfg.nan_policy != "skip":
                raise self._fitter.nonfinite_loss(self.step, self._total)
        return self._total, self.count


def parse_contexts(spec: str) -> list[mx.Context]:
    """``'cpu'``, ``'cpu:0,1'``, ``'gpu:0'``, ``'gpu:0,1'`` -> list of contexts."""
    kind, _, ids = spec.strip().lower().partition(":")
    if kind not in ("cpu", "gpu"):
        raise ConfigError(f"train.ctx: expected cpu, cpu:0,1, gpu:0 or gpu:0,1, got {spec!r}")
    try:
        numbers = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise ConfigError(f"train.ctx: bad device list in {spec!r}") from None
    make = mx.cpu if kind == "cpu" else mx.gpu
    if kind == "gpu" and mx.context.num_gpus() < max(numbers) + 1:
        raise ConfigError(f"train.ctx: {spec!r} asks for GPU {max(numbers)} but "
                          f"{mx.context.num_gpus()} GPU(s) are visible")
    return [make(i) for i in numbers]


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed Python, numpy and MXNet (every device) from ``(seed, epoch)``."""
    value = (seed * 1_000_003 + epoch) % (2**31 - 1)
    random.seed(value)
    np.random.seed(value)
    mx.random.seed(value, ctx="all")


def settle_kvstore(trainer: gluon.Trainer) -> None:
    """Initialise ``trainer``'s kvstore and wait until the initial parameters are pulled.

    MXNet 1.9.1, dist kvstore, ``update_on_kvstore=False``: the Trainer initialises the
    kvstore inside the first ``allreduce_grads()`` (rank 0 pushes the parameters, every
    worker pulls them, asynchronously) and pushes the gradients right after. The pull of a
    key is not ordered before the gradient push of that key, so the server may answer it
    with the first summed gradient: that parameter then differs between the workers for
    good. Waiting before the first all-reduce orders them.
    """
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    mx.nd.waitall()


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> tuple[str, dict]:
    """Optimizer name and arguments, with the learning-rate schedule."""
    args: dict[str, Any] = {"learning_rate": cfg.lr}
    if cfg.weight_decay:
        args["wd"] = cfg.weight_decay
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        args["lr_scheduler"] = mx.lr_scheduler.CosineScheduler(
            max_update=total, base_lr=cfg.lr, final_lr=0.0,
            warmup_steps=min(cfg.warmup_steps, total - 1))
    elif cfg.schedule == "step":
        args["lr_scheduler"] = mx.lr_scheduler.FactorScheduler(
            step=max(1, cfg.step_epochs * steps_per_epoch), factor=cfg.decay_factor,
            base_lr=cfg.lr)
    return cfg.optimizer, args


class Fitter:
    """Trains ``model`` for ``objective`` and writes everything into ``run_dir``.

    Parameters
    ----------
    checkpoint_files : dict
        Extra files (config, vocabulary, normalisation, metadata) stored in every
        checkpoint so a checkpoint is self-contained.
    callbacks : list of :class:`~mxlstm.training.callbacks.Callback`
        Run after every epoch, in order; None: :func:`~mxlstm.training.callbacks.
        default_callbacks` (plateau decay, early stopping, checkpointing as ``cfg`` asks).
    """

    def __init__(self, model: gluon.HybridBlock, objective: Objective, cfg: TrainConfig,
                 run_dir: str | Path, contexts: list[mx.Context],
                 checkpoint_files: dict[str, str] | None = None, kvstore: Any = None,
                 progress: Progress | None = None,
                 callbacks: list[Callback] | None = None) -> None:
        self.model = model
        self.kvstore = cfg.kvstore if kvstore is None else kvstore
        self.objective = objective
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.contexts = contexts
        self.checkpoint_files = checkpoint_files or {}
        self.monitor = cfg.monitor or objective.monitor
        self.trainer: gluon.Trainer | None = None
        self.progress = progress or Progress("auto" if cfg.progress else "off")
        self._steps: int | None = None
        self.callbacks = default_callbacks(cfg) if callbacks is None else list(callbacks)

    def check_monitor(self) -> None:
        """Refuse a ``train.monitor`` the validation metrics will not have (before any
        file of the run is made)."""
        names = {k for k in self.objective.new_metrics().result() if k not in ("confusion",
                                                                             "count")}
        names.add("loss")
        if self.monitor not in names:
            raise ConfigError(f"train.monitor: the validation metrics have no "
                              f"{self.monitor!r}; they have {', '.join(sorted(names))}")

    # -- one batch --------------------------------------------------------------------
    def _split(self, batch) -> list[tuple]:
        if len(self.contexts) == 1:
            return [tuple(to_context(list(batch), self.contexts[0]))]
        parts = [gluon.utils.split_and_load(a, self.contexts, even_split=False) for a in batch]
        return [tuple(p[i] for p in parts) for i in range(len(parts[0]))]

    def train_step(self, batch, step: int) -> tuple[float, float]:
        """Forward, backward, clip and update; returns (summed loss, item count)."""
        return self.issue_step(batch, step).result()

    def issue_step(self, batch, step: int) -> PendingLoss:
        """Queue forward, backward, clip and update of one batch on MXNet's engine and
        return without waiting for them: the caller loads the next batch meanwhile and
        reads this one's loss (:meth:`PendingLoss.result`) after queueing the next step.
        Only ``train.nan_policy=skip`` waits for the loss here, to skip the update of a
        non-finite batch. The result is the same as waiting at every step (same operations
        in the same order); a non-finite loss under ``stop`` is raised one step later,
        before any checkpoint is written."""
        shards = self._split(batch)
        with autograd.record():
            losses = [self.objective.forward(self.model, shard, i)[0]
                      for i, shard in enumerate(shards)]
        autograd.backward(losses)
        count = sum(self.objective.count(shard) for shard in shards)
        pending = PendingLoss(losses, count, step, self)
        if self.cfg.nan_policy == "skip":
            total, _ = pending.result()
            if not math.isfinite(total):
                log.warning("step %d: loss is %s; batch skipped", step, total)
                return PendingLoss.done(math.nan, 0.0)
        if not self._settled:
            settle_kvstore(self.trainer)
            self._settled = True
        self.trainer.allreduce_grads()
        # all-reduced gradients are summed over workers: normalise by the global count
        global_count = count * getattr(self.kvstore, "num_workers", 1)
        if self.cfg.clip_norm > 0:  # check_isfinite=False: no wait (the loss is checked)
            gluonnlp.utils.clip_grad_global_norm(self._grad_params,
                                                 self.cfg.clip_norm * global_count,
                                                 check_isfinite=False)
        self.trainer.update(global_count)
        return pending

    def nonfinite_loss(self, step: int, total: float) -> TrainingError:
        kept = find_checkpoint(self.run_dir, "latest")
        where = (f"the last good checkpoint {kept} is kept" if kept is not None else
                 "no epoch had finished, so no checkpoint was saved")
        return TrainingError(
            f"step {step}: the training loss became {total}; stopped, {where} (try a "
            f"lower train.lr, train.clip_norm, or train.nan_policy=skip)")

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, loader, phase: str = "validate", epoch: int | None = None) -> dict:
        """Metrics of the model on ``loader`` (no dropout, no gradients); ``phase`` names
        the progress bar (``validate`` / ``test``)."""
        metrics = self.objective.new_metrics()
        self.objective.begin_epoch(self.contexts)
        try:
            total = len(loader)
        except TypeError:
            total = None
        for batch in self.progress.phase(loader, phase, total, epoch):
            for i, shard in enumerate(self._split(batch)):
                loss, outputs = self.objective.forward(self.model, shard, i)
                self.objective.update_metrics(metrics, shard, outputs, loss)
        return metrics.result()

    # -- the loop ---------------------------------------------------------------------
    def make_trainer(self, steps_per_epoch: int) -> gluon.Trainer:
        """The optimizer (with its schedule) that :meth:`train_step` updates; :meth:`fit`
        calls this first (``mxlstm.bench e2e`` too, to step the model without the loop)."""
        name, args = make_optimizer(self.cfg, steps_per_epoch)
        self.trainer = gluon.Trainer(self.model.collect_params(), name, args,
                                     kvstore=self.kvstore, update_on_kvstore=False)
        self._grad_params = [p for p in self.model.collect_params().values()
                             if p.grad_req != "null"]
        self._settled = False
        return self.trainer

    def fit(self, train_loader, valid_loader, steps_per_epoch: int,
            start: Path | None = None, extended: bool = False) -> dict:
        """Train until ``cfg.epochs`` (or early stopping); returns the final training state.

        ``valid_loader`` None: no validation split (``train.select=last``), so the metrics
        lines have no ``valid_*`` columns.

        ``start`` is the checkpoint to go on from (None: from scratch); ``extended``: the run
        was given more epochs (``--extend-epochs``), so an early stop no longer ends it.
        ``metrics.jsonl`` is
        rewritten from the checkpoint's history first, so a run killed between a checkpoint
        and its metrics line (or the other way round) never shows an epoch twice or not at
        all. A state that is already finished trains nothing.
        """
        self.make_trainer(steps_per_epoch)
        self._steps = steps_per_epoch
        state = {"epoch": 0, "global_step": 0, "best": None, "best_epoch": None,
                 "bad_epochs": 0, "history": [], "stopped_early": False}
        # dist workers must start from one epoch; checked before the checkpoint's optimizer
        # state initialises the Trainer's kvstore, so every worker runs the same kvstore
        # operations in the same order
        agree_on_start(self.kvstore, 0 if start is None else checkpoint_epoch(start))
        if start is not None:
            state = load_checkpoint(start, self.model, self.trainer, ctx=self.contexts)
            state.setdefault("stopped_early", False)
            if extended:
                state["stopped_early"], state["bad_epochs"] = False, 0
            log.info("resumed from %s (epoch %d done)", start, state["epoch"])
        metrics_log = MetricsLog(self.run_dir / "metrics.jsonl")
        metrics_log.rewrite(state["history"])
        state["epochs_planned"] = self.cfg.epochs
        with self.progress.session(self.cfg.epochs):
            while state["epoch"] < self.cfg.epochs and not state["stopped_early"]:
                self._epoch(train_loader, valid_loader, state, metrics_log)
        return state

    def _epoch(self, train_loader, valid_loader, state: dict, metrics_log: MetricsLog) -> None:
        """Train one epoch, validate, checkpoint, log."""
        epoch = state["epoch"]
        started = time.perf_counter()
        record = self._train_epoch(train_loader, epoch, state)
        if valid_loader is not None:  # None: no validation split (train.select=last)
            record.update({f"valid_{k}": v for k, v in
                           self.evaluate(valid_loader, "validate", epoch).items()
                           if k != "confusion"})
        self.progress.end_epoch(time.perf_counter() - started)
        record["lr"] = self.trainer.learning_rate
        if valid_loader is not None:
            record["main_metric"] = f"valid_{self.monitor}"
        state["epoch"] = epoch + 1
        self._track_best(state, record)
        state["history"].append(record)
        for callback in self.callbacks:  # the checkpoint before its metrics line
            callback.on_epoch_end(self, state, record)
        metrics_log.write(record)
        valid = record.get(f"valid_{self.monitor}")
        log.info("epoch %d: train loss %.4f%s%s", epoch + 1, record["train_loss"],
                 "" if valid is None else f", valid {self.monitor} {valid:.4f}",
                 " (best)" if state["best_epoch"] == epoch + 1 else "")
        if state["stopped_early"]:
            log.info("early stopping: no improvement for %d epochs", state["bad_epochs"])

    def queued_steps(self, batches: Iterable, step: int) -> Iterator[tuple[Any, tuple | None]]:
        """Train on every batch of ``batches`` (global steps ``step + 1``, ...), reading each
        step's loss only once the next step is queued, so that loading the next batch
        overlaps the engine's work on this one (the same result as waiting at every step).

        Yields ``(batch, done)`` after queueing each batch's step, ``done`` the previous
        step's ``(summed loss, item count)`` (None for the first), then ``(None, done)`` for
        the last step."""
        previous: PendingLoss | None = None
        for batch in batches:
            step += 1
            pending = self.issue_step(batch, step)
            yield batch, None if previous is None else previous.result()
            previous = pending
        if previous is not None:
            yield None, previous.result()

    def _train_epoch(self, loader, epoch: int, state: dict) -> dict:
        seed_everything(self.cfg.seed, epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        self.objective.begin_epoch(self.contexts)
        loss_sum, count, items, start = 0.0, 0.0, 0, time.perf_counter()
        bar = self.progress.phase(loader, "train", self._steps, epoch)
        batches = itertools.islice(bar, self.cfg.max_batches or None)
        for batch, done in self.queued_steps(batches, state["global_step"]):
            if batch is not None:
                state["global_step"] += 1
                items += batch[0].shape[0]
            if done is not None and done[1]:
                loss_sum, count = loss_sum + done[0], count + done[1]
            if batch is not None and done is not None:
                bar.set(loss=f"{loss_sum / max(count, 1):.4f}",
                        seq_s=f"{items / (time.perf_counter() - start):.0f}")
        bar.close()
        seconds = time.perf_counter() - start
        return {"epoch": epoch + 1, "step": state["global_step"],
                "train_loss": loss_sum / max(count, 1), "seconds": seconds,
                "sequences_per_second": items / max(seconds, 1e-9)}

    def _track_best(self, state: dict, record: dict) -> None:
        """Track the best epoch (ties in the monitored metric go to the lower validation
        loss) and the epochs since (``bad_epochs``); with ``train.select=last`` the kept
        epoch is the final one (``best_epoch`` is set when it is done)."""
        value = record.get(f"valid_{self.monitor}")
        if self.cfg.select == "last":
            if state["epoch"] >= self.cfg.epochs:
                state["best"], state["best_epoch"], state["bad_epochs"] = value, \
                    state["epoch"], 0
                state["best_loss"] = record.get("valid_loss")
            return
        if value is None:
            raise ConfigError(f"train.monitor: the validation metrics have no "
                              f"{self.monitor!r}; they have "
                              f"{sorted(k[6:] for k in record if k.startswith('valid_'))}")
        loss = record.get("valid_loss")
        best_loss = state.get("best_loss")
        tie = (value == state["best"] and loss is not None and self.monitor != "loss"
               and loss < (math.inf if best_loss is None else best_loss))
        if state["best"] is None or is_better(self.monitor, value, state["best"]) or tie:
            state["best"], state["best_epoch"], state["bad_epochs"] = value, state["epoch"], 0
            state["best_loss"] = loss
        else:
            state["bad_epochs"] += 1

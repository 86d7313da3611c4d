"""A run directory from start to finish: train a task, evaluate a trained model.

Layout of ``--out DIR``::

    DIR/config.json        the effective configuration (all keys)
    DIR/meta.json          input spec, label names, normalisation, tokeniser (+ vocab.json)
    DIR/metrics.jsonl      one line per epoch (train loss, validation metrics, lr, speed)
    DIR/checkpoints/       epoch-NNNN (latest) and best, each self-contained
    DIR/fingerprints.json  sha256 of every data file read and of what was fitted on them
    DIR/report.json        test metrics of the best checkpoint, baselines, timings
    DIR/train.log          the log; curves.png / confusion.png with matplotlib
    DIR/report.html        written by ``mxlstm report DIR``

The resume rule is in :mod:`mxlstm.training.resume`, the directory's guarantees (lock,
nothing lost, nothing half-made) in :mod:`mxlstm.training.rundir`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx

from mxlstm import __version__, tasks
from mxlstm.blocks.models import count_parameters
from mxlstm.config import RunConfig, apply_overrides, config_from_dict
from mxlstm.data.fileio import recording_reads
from mxlstm.errors import (
    ConfigError,
    ModelFileError,
    MxlstmError,
    TrainingError,
    error_reason,
)
from mxlstm.launch import announce_rank
from mxlstm.training.atomic import write_atomic
from mxlstm.training.checkpoint import find_checkpoint, load_checkpoint
from mxlstm.training.figures import draw_run_figures, figures_after_training
from mxlstm.training.log import setup_logging, write_report
from mxlstm.training.progress import Progress
from mxlstm.training.resume import (
    finished,
    finished_report,
    read_json,
    recorded_config,
    require_best,
    resume_config,
)
from mxlstm.training.rundir import (
    FINGERPRINTS,
    RunLock,
    RunStatus,
    check_same_inputs,
    fingerprint_inputs,
    refuse_lost_run,
    remove_unstarted,
    run_status,
)
from mxlstm.training.selection import check_selection, has_validation, selection_report
from mxlstm.training.trainer import Fitter, parse_contexts, seed_everything

log = logging.getLogger(__name__)


def _check_writable(out: Path) -> None:
    """Check that ``out`` can be made (nothing is created yet, so that bad data leaves no
    half-made run behind)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{out}: output directory is not writable ({existing} is not a "
                          f"directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: output directory is not writable (no permission to "
                          f"write in {existing})")


def _check_new_run(out: Path, status: RunStatus | None) -> None:
    """A run without ``--resume`` may go into a new or empty directory, or one whose run
    never reached its first checkpoint (it is started again)."""
    if status is None or not status.has_config:
        return
    if status.started:
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or "
                          f"choose another --out")
    try:
        recorded_config(out)
    except MxlstmError as err:
        raise ConfigError(f"{out} holds a config.json that is not an mxlstm run ({err}); "
                          f"choose another --out") from None
    log.warning("%s holds a run that never finished its first epoch: starting it again", out)


def _make_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{out}: output directory is not writable ({err.strerror})") from None


def _kvstore(cfg: RunConfig):
    """The kvstore (an object for distributed ones, so the worker's rank is known before
    the data is split) and this process's data shard ``(rank, num_workers)``."""
    name = cfg.train.kvstore
    if not name.startswith("dist"):
        return name, (0, 1)
    try:
        kv = mx.kv.create(name)
    except mx.base.MXNetError as err:
        raise ConfigError(f"train.kvstore={name}: cannot join the parameter-server job "
                          f"(start workers with 'mxlstm launch'): {error_reason(err)}") \
            from None
    announce_rank(kv.rank)  # so that `mxlstm launch` labels this worker's lines by rank
    return kv, (kv.rank, kv.num_workers)


def with_min_steps(cfg: RunConfig, steps_per_epoch: int) -> RunConfig:
    """``cfg`` with ``train.epochs`` raised so that the run takes at least
    ``train.min_steps`` optimizer steps (recorded in ``config.json``, so a resume continues
    to the same total)."""
    need = -(-cfg.train.min_steps // max(1, steps_per_epoch))
    if need <= cfg.train.epochs:
        return cfg
    log.info("train.epochs %d -> %d: %d steps per epoch, train.min_steps=%d", cfg.train.epochs,
             need, steps_per_epoch, cfg.train.min_steps)
    return apply_overrides(cfg, {"train.epochs": need}, "train.min_steps")


def init_model(prepared, contexts) -> None:
    """Initialise the prepared model on ``contexts`` and hybridize it, as training does."""
    prepared.model.initialize(mx.init.Xavier(), ctx=contexts)
    prepared.model.hybridize(static_alloc=True)


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (none of it changes what is computed)."""

    resume: bool = False
    debug: bool = False
    extend_epochs: int = 0
    explicit: list[tuple[dict, str]] | None = None  # the keys the user gave, for resume
    progress: str = "auto"  # bars: auto (on a terminal) | on | off
    quiet: bool = False  # warnings and errors only on stderr


def train(cfg: RunConfig, out: str | Path, resume: bool = False, debug: bool = False,
          extend_epochs: int = 0, explicit: list[tuple[dict, str]] | None = None,
          progress: str = "auto", quiet: bool = False) -> dict:
    """Train ``cfg.task`` into ``out``; returns the final report (also ``report.json``).

    ``resume`` continues the run recorded in ``out`` exactly (see :func:`resume_config`;
    ``extend_epochs`` adds epochs and rebuilds the schedule for the new total). A finished
    run is not trained again: its report is returned (``report["already_finished"]``).
    ``progress`` / ``quiet``: see :mod:`mxlstm.training.progress`.
    """
    options = RunOptions(resume, debug, extend_epochs, explicit, progress, quiet)
    out = Path(out)
    cfg = _small_data_protocol(cfg, out, resume, quiet)
    if resume:  # a seed ensemble resumes its own K seeds
        from mxlstm.ensemble import resume_ensemble_config
        cfg = resume_ensemble_config(out, cfg, explicit)
    check_selection(cfg)  # e.g. data.valid_fraction=0 with train.select=best
    if cfg.train.ensemble > 1:  # K member runs in out/members/, see mxlstm.ensemble
        from mxlstm.ensemble import train_ensemble
        return train_ensemble(cfg, out, resume=resume, debug=debug,
                              extend_epochs=extend_epochs, explicit=explicit,
                              progress=progress, quiet=quiet)
    kvstore, shard = _kvstore(cfg)
    if shard[1] > 1:  # each distributed worker keeps its own run directory
        out = out / f"worker-{shard[0]}"
    if extend_epochs and not resume:
        raise ConfigError("--extend-epochs adds epochs to a run: use it with --resume")
    _check_writable(out)
    lock = RunLock(out)
    if out.is_dir():
        lock.acquire()  # a second process into the same directory stops here
    try:
        return _train_locked(cfg, out, options, kvstore, shard, lock)
    finally:
        lock.release()


def _small_data_protocol(cfg: RunConfig, out: Path, resume: bool,
                         quiet: bool = False) -> RunConfig:
    """``train.small_data`` resolved: from the data for a new run (reading it: bad data
    stops here; said on stderr, as the run's log starts later), from the recorded
    ``config.json`` for a resumed one (the run keeps the protocol it started with)."""
    if not cfg.train.small_data:
        return cfg
    if not (resume and (out / "config.json").is_file()):
        resolved = tasks.resolve_small_data(cfg)
        if resolved.train.ensemble != cfg.train.ensemble and not quiet:
            rule = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in tasks.SMALL_DATA_RULE.items())
            print(f"mxlstm: fewer than train.small_data={cfg.train.small_data} training "
                  f"series, so {rule} (every series trains; the final epochs of 3 seeds "
                  f"are averaged)", file=sys.stderr)
        return resolved
    recorded = recorded_config(out).to_dict()
    keys = [*tasks.SMALL_DATA_RULE, "train.small_data"]
    return apply_overrides(cfg, {k: recorded[k.split(".")[0]][k.split(".")[1]] for k in keys},
                           str(out / "config.json"))


def _train_locked(cfg, out: Path, options: RunOptions, kvstore, shard, lock: RunLock) -> dict:
    resume, extend_epochs = options.resume, options.extend_epochs
    status = run_status(out) if out.is_dir() else None
    start = None
    if resume and status is not None and status.has_config:
        refuse_lost_run(out, status)
        cfg = resume_config(out, cfg, options.explicit, extend_epochs)
        start = status.checkpoint
        if start is not None:
            require_best(out, start)
        if start is None:
            log.warning("%s: no epoch had finished: starting the run from its first epoch",
                        out)
    elif resume and status is not None and status.started:
        refuse_lost_run(out, status)
    elif not resume:
        _check_new_run(out, status)
    if start is not None and extend_epochs == 0 and finished(start, cfg):
        report = finished_report(out)
        if report is not None:
            return report
    contexts = parse_contexts(cfg.train.ctx)
    seed_everything(cfg.train.seed)
    started = time.time()
    with recording_reads() as reads:
        prepared = tasks.prepare(cfg, shard=shard)  # bad data stops here, before any file
    fingerprint = fingerprint_inputs(reads, prepared.meta, prepared.files)
    if start is None:
        cfg = with_min_steps(cfg, prepared.steps_per_epoch)
    Fitter(prepared.model, prepared.objective, cfg.train, out, contexts).check_monitor()
    if start is not None:
        check_same_inputs(out, fingerprint)
    init_model(prepared, contexts)
    created = not out.exists()
    _make_output_dir(out)
    lock.acquire()
    if status is None or created:  # made by this process: look again under the lock
        status = run_status(out)
        if not resume:
            _check_new_run(out, status)
    try:
        return _fit_and_report(cfg, out, prepared, contexts, kvstore, fingerprint, start,
                               started, options)
    except BaseException:
        if start is None:  # nothing of an earlier run is here: leave no half-made run
            remove_unstarted(out, created)
        raise


def train_seconds(history: list[dict]) -> float:
    """Seconds of the training loops of every epoch in ``history`` (each epoch's
    ``seconds`` in ``metrics.jsonl``), whichever process ran it: a resumed run's
    ``seconds`` are only those of the resuming process."""
    return round(sum(float(r.get("seconds") or 0.0) for r in history), 1)


def _fit_and_report(cfg: RunConfig, out: Path, prepared, contexts, kvstore, fingerprint: dict,
                    start: Path | None, started: float, options: RunOptions) -> dict:
    setup_logging(out, debug=options.debug, quiet=options.quiet)
    files = {"config.json": cfg.to_json(), "meta.json": json.dumps(prepared.meta, indent=2),
             **prepared.files}
    for name, text in files.items():
        _write_output(out / name, text)
    _write_output(out / FINGERPRINTS, json.dumps(fingerprint, indent=1))
    log.info("task %s: %s; training on %s", cfg.task, prepared.meta.get("counts"),
             ", ".join(str(c) for c in contexts))
    mode = options.progress if cfg.train.progress else "off"
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, out, contexts, files,
                    kvstore=kvstore, progress=Progress(mode, quiet=options.quiet))
    state = fitter.fit(prepared.train_loader, prepared.valid_loader,
                       prepared.steps_per_epoch, start=start,
                       extended=bool(options.extend_epochs))
    best = find_checkpoint(out, "best")
    if best is None:
        raise ModelFileError(f"{out / 'checkpoints' / 'best'}: missing or invalid, so the "
                             f"test metrics of the best epoch cannot be computed (the latest "
                             f"checkpoint is kept; evaluate it with --tag latest)")
    load_checkpoint(best, prepared.model, None, ctx=contexts)
    test = fitter.evaluate(prepared.test_loader, "test")
    report = {
        "task": cfg.task, "mxlstm": __version__, "mxnet": mx.__version__,
        "seed": cfg.train.seed, "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"], "epochs_planned": cfg.train.epochs,
        "stopped_early": bool(state.get("stopped_early")),
        "monitor": fitter.monitor if has_validation(cfg) else None,
        "selection": selection_report(cfg), "best_valid": state["best"], "test": test,
        "parameters": count_parameters(prepared.model),
        "counts": prepared.meta.get("counts"), "seconds": round(time.time() - started, 1),
        "resumed": start is not None, "train_seconds": train_seconds(state["history"]),
        "baseline": baseline(prepared),
    }
    try:
        write_report(out / "report.json", report)
    except OSError as err:
        raise TrainingError(f"{out / 'report.json'}: cannot write ({error_reason(err)})") \
            from None
    if figures_after_training():
        draw_run_figures(out)
    return report


def _write_output(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as err:  # e.g. disk full: write_atomic leaves the old file as it was
        raise TrainingError(f"{path}: cannot write ({error_reason(err)})") from None


def baseline(prepared) -> dict:
    """The task's simple references: those of :mod:`mxlstm.baselines` when the task gives
    their data (series: majority, 1-NN Euclidean / DTW; text: majority, bag-of-words
    logistic regression; series regression: training mean, ridge), else
    :attr:`TaskSpec.baseline <mxlstm.tasks.spec.TaskSpec>` (majority-class accuracy,
    mean-predictor MSE, unigram perplexity or the memoryless copy-task cross-entropy)."""
    from mxlstm.baselines import report_baselines

    extra = report_baselines(prepared.baseline_data)  # 1-NN, bag of words, ridge
    return extra or prepared.spec.compute_baseline(prepared)


def load_run(model_dir: str | Path) -> tuple[RunConfig, dict]:
    """The configuration and artefacts (meta + extra files) of a trained model directory."""
    from mxlstm.data.fileio import read_text
    from mxlstm.data.text import load_vocab

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        what = "a file" if model_dir.exists() else "no such directory"
        raise ModelFileError(f"{model_dir}: not a model directory ({what})")
    config_path, meta_path = model_dir / "config.json", model_dir / "meta.json"
    tree = read_json(config_path, model_dir)
    meta = read_json(meta_path, model_dir)
    cfg = config_from_dict(tree, str(config_path))
    if meta.get("task") != cfg.task:
        raise ModelFileError(f"{model_dir}: meta.json is of task {meta.get('task')!r} but "
                             f"config.json of {cfg.task!r}")
    for key, kind in (("label_names", list), ("input", dict)):
        if not isinstance(meta.get(key), kind):
            raise ModelFileError(f"{meta_path}: damaged, no {key!r} {kind.__name__}")
    vocab = model_dir / "vocab.json"
    meta["files"] = {}
    if meta["input"].get("vocab") or vocab.exists():
        load_vocab(vocab)  # DataError naming the file: missing, a directory, damaged
        meta["files"]["vocab.json"] = read_text(vocab)
    return cfg, meta


def load_model(model_dir: str | Path, cfg: RunConfig | None = None, meta: dict | None = None,
               tag: str = "best", ctx: list | None = None):
    """Rebuild the trained model of ``model_dir`` (checkpoint ``tag``); returns
    ``(prepared, cfg, meta)`` with the parameters loaded."""
    if cfg is None or meta is None:
        cfg, meta = load_run(model_dir)
    if cfg.train.ensemble > 1:  # the members' best checkpoints, averaged
        from mxlstm.ensemble import load_ensemble
        return load_ensemble(model_dir, cfg, meta, ctx)
    contexts = ctx or [mx.cpu()]
    prepared = tasks.prepare(cfg, artefacts=meta)
    init_model(prepared, contexts)
    path = find_checkpoint(Path(model_dir), tag)
    if path is None:
        raise ModelFileError(f"{model_dir}: no valid checkpoint {tag!r} found")
    load_checkpoint(path, prepared.model, None, ctx=contexts)
    return prepared, cfg, meta


def evaluate(model_dir: str | Path, data: str | None = None,
             test_data: str | None = None) -> dict:
    """Test metrics of a trained model, on its own test split or on ``data``."""
    cfg, meta = load_run(model_dir)
    if data:
        cfg = apply_overrides(cfg, {"data.path": data, "data.test_path": test_data or data,
                                   "data.valid_path": ""},
                              "--data")
    prepared, cfg, meta = load_model(model_dir, cfg, meta)
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, model_dir, [mx.cpu()])
    return {"task": cfg.task, "model": str(model_dir), "data": data or "task default",
            "test": fitter.evaluate(prepared.test_loader)}

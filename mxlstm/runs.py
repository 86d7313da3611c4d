"""A run directory from start to finish: train a task, evaluate a trained model.

Layout of ``--out DIR``::

    DIR/config.json        the effective configuration (all keys)
    DIR/meta.json          input spec, label names, normalisation, tokeniser (+ vocab.json)
    DIR/metrics.jsonl      one line per epoch (train loss, validation metrics, lr, speed)
    DIR/checkpoints/       epoch-NNNN (latest) and best, each self-contained
    DIR/report.json        test metrics of the best checkpoint, baseline, timings
    DIR/train.log          the log; curves.png / confusion.png with matplotlib
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import mxnet as mx
import numpy as np

from mxlstm import __version__, tasks
from mxlstm.data.fileio import recording_reads
from mxlstm.errors import (
    ConfigError,
    ModelFileError,
    MxlstmError,
    TrainingError,
    error_reason,
)
from mxlstm.launch import announce_rank
from mxlstm.models import count_parameters
from mxlstm.training.checkpoint import (
    checkpoint_epoch,
    find_checkpoint,
    load_checkpoint,
    write_atomic,
)
from mxlstm.training.config import RunConfig, apply_overrides, config_from_dict
from mxlstm.training.log import plot_confusion, plot_curves, setup_logging, write_report
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
from mxlstm.training.trainer import Fitter, parse_contexts, seed_everything

log = logging.getLogger(__name__)


# keys a resume may change: they decide where and how fast, not what is computed
RESUMABLE_CHANGES = {"train.progress", "train.ctx", "train.kvstore", "data.num_workers"}


def _flat(cfg: RunConfig) -> dict:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items()
            if isinstance(values, dict) for key, value in values.items()}


def _read_json(path: Path, model_dir: Path) -> dict:
    """A JSON object file of a run directory; every problem names the file."""
    from mxlstm.data.validate import special_file_problem

    problem = path.exists() and special_file_problem(path)  # a FIFO would block for ever
    if problem:
        raise ModelFileError(f"{path}: {problem}, expected a JSON file")
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{model_dir}: not a model directory ({path} is missing)") \
            from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read ({err.strerror})") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ModelFileError(f"{path}: damaged, not valid JSON ({err})") from None
    if not isinstance(tree, dict):
        raise ModelFileError(f"{path}: damaged, expected a JSON object, got "
                             f"{type(tree).__name__}")
    return tree


def recorded_config(out: Path) -> RunConfig:
    """The configuration a run directory was trained with (its ``config.json``)."""
    saved = out / "config.json"
    return config_from_dict(_read_json(saved, out), str(saved))


def resume_config(out: Path, cfg: RunConfig, explicit: list[tuple[dict, str]] | None,
                  extend_epochs: int = 0) -> RunConfig:
    """The configuration of a resume: the run's own (``config.json``), with the keys the
    user gave explicitly (``explicit``: ``(overrides, source)`` pairs) applied on top, and
    ``train.epochs`` raised by ``extend_epochs``. Without ``explicit`` (the Python API),
    ``cfg`` itself must match the run. Keys outside :data:`RESUMABLE_CHANGES` that differ
    from the run's are refused, naming them."""
    old = recorded_config(out)
    if old.task != cfg.task:
        raise ConfigError(f"{out} holds a run of task {old.task!r}, not {cfg.task!r}")
    if explicit is not None:
        cfg = old
        for overrides, source in explicit:
            cfg = apply_overrides(cfg, overrides, source)
    before, now = _flat(old), _flat(cfg)
    changed = sorted(k for k, v in before.items() if now[k] != v and k not in RESUMABLE_CHANGES)
    if changed:
        shown = ", ".join(f"{k} ({before[k]!r} -> {now[k]!r})" for k in changed)
        hint = ("; to train more epochs use --extend-epochs N" if "train.epochs" in changed
                else "")
        raise ConfigError(f"{out}: --resume continues the run as it was configured; these "
                          f"keys differ from its config.json: {shown}{hint}")
    if extend_epochs:
        done = checkpoint_epoch(find_checkpoint(out, "latest"))
        epochs = max(old.train.epochs, done) + extend_epochs
        cfg = apply_overrides(cfg, {"train.epochs": epochs}, "--extend-epochs")
    return cfg


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


def init_model(prepared, contexts) -> None:
    """Initialise the prepared model on ``contexts`` and hybridize it, as training does."""
    prepared.model.initialize(mx.init.Xavier(), ctx=contexts)
    prepared.model.hybridize(static_alloc=True)


def train(cfg: RunConfig, out: str | Path, resume: bool = False, debug: bool = False,
          extend_epochs: int = 0, explicit: list[tuple[dict, str]] | None = None) -> dict:
    """Train ``cfg.task`` into ``out``; returns the final report (also ``report.json``).

    ``resume`` continues the run recorded in ``out`` exactly (see :func:`resume_config`;
    ``extend_epochs`` adds epochs and rebuilds the schedule for the new total). A finished
    run is not trained again: its report is returned (``report["already_finished"]``).
    """
    out = Path(out)
    if cfg.train.ensemble > 1:  # K member runs in out/members/, see mxlstm.ensemble
        from mxlstm.ensemble import train_ensemble
        return train_ensemble(cfg, out, resume=resume, debug=debug)
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
        return _train_locked(cfg, out, resume, debug, extend_epochs, explicit, kvstore,
                             shard, lock)
    finally:
        lock.release()


def _train_locked(cfg, out: Path, resume: bool, debug: bool, extend_epochs: int,
                  explicit, kvstore, shard, lock: RunLock) -> dict:
    status = run_status(out) if out.is_dir() else None
    start = None
    if resume and status is not None and status.has_config:
        refuse_lost_run(out, status)
        cfg = resume_config(out, cfg, explicit, extend_epochs)
        start = status.checkpoint
        if start is not None:
            _require_best(out, start)
        if start is None:
            log.warning("%s: no epoch had finished: starting the run from its first epoch",
                        out)
    elif resume and status is not None and status.started:
        refuse_lost_run(out, status)
    elif not resume:
        _check_new_run(out, status)
    if start is not None and extend_epochs == 0 and _finished(start, cfg):
        finished = _finished_report(out)
        if finished is not None:
            return finished
    contexts = parse_contexts(cfg.train.ctx)
    seed_everything(cfg.train.seed)
    started = time.time()
    with recording_reads() as reads:
        prepared = tasks.prepare(cfg, shard=shard)  # bad data stops here, before any file
    fingerprint = fingerprint_inputs(reads, prepared.meta, prepared.files)
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
                               bool(extend_epochs), started, debug)
    except BaseException:
        if start is None:  # nothing of an earlier run is here: leave no half-made run
            remove_unstarted(out, created)
        raise


def _require_best(out: Path, latest: Path) -> None:
    """A resume needs the best epoch's checkpoint once there is a best epoch: the report
    is computed from it."""
    try:
        best_epoch = json.loads((latest / "state.json").read_text("utf-8")).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        best_epoch = None
    if best_epoch is not None and find_checkpoint(out, "best") is None:
        raise ModelFileError(
            f"{out / 'checkpoints' / 'best'}: missing or invalid, so the parameters of the "
            f"best epoch ({best_epoch}) are lost and the run cannot report its best model; "
            f"restore the directory or start a new run (nothing was changed)")


def _finished(checkpoint: Path, cfg: RunConfig) -> bool:
    try:
        state = json.loads((checkpoint / "state.json").read_text("utf-8"))
        return bool(state.get("stopped_early")) or int(state["epoch"]) >= cfg.train.epochs
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _finished_report(out: Path) -> dict | None:
    """The report of a finished run (None if it was killed before writing it)."""
    try:
        report = _read_json(out / "report.json", out)
    except ModelFileError:
        return None
    log.warning("%s: the run is finished (epoch %s, best epoch %s); nothing to train. "
                "Use --resume --extend-epochs N to train N more epochs", out,
                report.get("epochs_run"), report.get("best_epoch"))
    return {**report, "already_finished": True}


def _fit_and_report(cfg: RunConfig, out: Path, prepared, contexts, kvstore, fingerprint: dict,
                    start: Path | None, extended: bool, started: float, debug: bool) -> dict:
    setup_logging(out, debug=debug)
    files = {"config.json": cfg.to_json(), "meta.json": json.dumps(prepared.meta, indent=2),
             **prepared.files}
    for name, text in files.items():
        _write_output(out / name, text)
    _write_output(out / FINGERPRINTS, json.dumps(fingerprint, indent=1))
    log.info("task %s: %s; training on %s", cfg.task, prepared.meta.get("counts"),
             ", ".join(str(c) for c in contexts))
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, out, contexts, files,
                    kvstore=kvstore)
    state = fitter.fit(prepared.train_loader, prepared.valid_loader,
                       prepared.steps_per_epoch, start=start, extended=extended)
    best = find_checkpoint(out, "best")
    if best is None:
        raise ModelFileError(f"{out / 'checkpoints' / 'best'}: missing or invalid, so the "
                             f"test metrics of the best epoch cannot be computed (the latest "
                             f"checkpoint is kept; evaluate it with --tag latest)")
    load_checkpoint(best, prepared.model, None, ctx=contexts)
    test = fitter.evaluate(prepared.test_loader)
    report = {
        "task": cfg.task, "mxlstm": __version__, "mxnet": mx.__version__,
        "seed": cfg.train.seed, "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"], "monitor": fitter.monitor,
        "best_valid": state["best"], "test": test,
        "parameters": count_parameters(prepared.model),
        "counts": prepared.meta.get("counts"), "seconds": round(time.time() - started, 1),
        "baseline": baseline(prepared),
    }
    try:
        write_report(out / "report.json", report)
    except OSError as err:
        raise TrainingError(f"{out / 'report.json'}: cannot write ({error_reason(err)})") \
            from None
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    if "confusion" in test:
        plot_confusion(np.array(test["confusion"]), prepared.meta["label_names"],
                       out / "confusion.png")
    return report


def _write_output(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as err:  # e.g. disk full: write_atomic leaves the old file as it was
        raise TrainingError(f"{path}: cannot write ({error_reason(err)})") from None


def baseline(prepared) -> dict:
    """Simple references: those of :mod:`mxlstm.baselines` when the task gives their data
    (series: majority, 1-NN Euclidean / DTW; text: majority, bag-of-words logistic
    regression; series regression: training mean, ridge), else majority-class accuracy,
    mean-predictor MSE, unigram perplexity (add-one smoothing) or the memoryless copy-task
    cross-entropy."""
    from mxlstm.baselines import report_baselines

    extra = report_baselines(prepared.baseline_data)  # 1-NN, bag of words, ridge
    kind = prepared.meta["kind"]
    if extra:
        return extra
    if kind in ("sequence_classification", "text_classification"):
        from mxlstm.training.metrics import majority_baseline
        train = prepared.train_labels  # the loader would run augmentation for nothing
        if train is None:
            train = np.concatenate([b[1].asnumpy() for b in prepared.train_loader])
        test = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
        return {"majority_accuracy": majority_baseline(train, test)}
    if kind == "regression":
        targets = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
        return {"mean_predictor_mse": float(np.var(targets))}
    if kind == "language_model":
        from mxlstm.training.metrics import unigram_perplexity
        return {"unigram_perplexity": unigram_perplexity(
            prepared.train_loader.ids, prepared.test_loader.ids,
            prepared.meta["input"]["vocab_size"])}
    if kind == "tagging":
        from mxlstm.data.synthetic import copy_memory_baseline
        return {"memoryless_nll": copy_memory_baseline(
            prepared.meta["copy_length"], prepared.meta["sequence_length"])}
    return {}


def load_run(model_dir: str | Path) -> tuple[RunConfig, dict]:
    """The configuration and artefacts (meta + extra files) of a trained model directory."""
    from mxlstm.data.fileio import read_text
    from mxlstm.data.text import load_vocab

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        what = "a file" if model_dir.exists() else "no such directory"
        raise ModelFileError(f"{model_dir}: not a model directory ({what})")
    config_path, meta_path = model_dir / "config.json", model_dir / "meta.json"
    tree = _read_json(config_path, model_dir)
    meta = _read_json(meta_path, model_dir)
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
        cfg = apply_overrides(cfg, {"data.path": data, "data.test_path": test_data or data},
                              "--data")
    prepared, cfg, meta = load_model(model_dir, cfg, meta)
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, model_dir, [mx.cpu()])
    return {"task": cfg.task, "model": str(model_dir), "data": data or "task default",
            "test": fitter.evaluate(prepared.test_loader)}

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
from mxlstm.errors import ConfigError, ModelFileError, TrainingError
from mxlstm.launch import announce_rank
from mxlstm.models import count_parameters
from mxlstm.training.checkpoint import find_checkpoint, load_checkpoint, write_atomic
from mxlstm.training.config import RunConfig, config_from_dict
from mxlstm.training.log import plot_confusion, plot_curves, setup_logging, write_report
from mxlstm.training.trainer import Fitter, parse_contexts, seed_everything

log = logging.getLogger(__name__)


RESUMABLE_CHANGES = {"train.epochs", "train.progress", "train.ctx", "train.kvstore",
                     "data.num_workers"}


def _flat(cfg: RunConfig) -> dict:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items()
            if isinstance(values, dict) for key, value in values.items()}


def _read_json(path: Path, model_dir: Path) -> dict:
    """A JSON object file of a run directory; every problem names the file."""
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


def _check_output_dir(out: Path, cfg: RunConfig, resume: bool) -> None:
    """Refuse to overwrite another run; check that the directory can be made (nothing is
    created yet, so that bad data leaves no half-made run behind)."""
    saved = out / "config.json"
    if saved.exists():
        old = _read_json(saved, out)
        if not resume:
            raise ConfigError(f"{out} already holds a run (task {old.get('task')!r}); "
                              f"use --resume to continue it or choose another --out")
        if old.get("task") != cfg.task:
            raise ConfigError(f"{out} holds a run of task {old.get('task')!r}, not "
                              f"{cfg.task!r}")
        changed = sorted(k for k, v in _flat(config_from_dict(old, str(saved))).items()
                         if _flat(cfg)[k] != v and k not in RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(f"{out}: --resume continues the run as it was configured; "
                              f"these keys differ from its config.json: {', '.join(changed)}")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{out}: output directory is not writable ({existing} is not a "
                          f"directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: output directory is not writable (no permission to "
                          f"write in {existing})")


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
                          f"(start workers with 'mxlstm launch'): {str(err).splitlines()[0]}") \
            from None
    announce_rank(kv.rank)  # so that `mxlstm launch` labels this worker's lines by rank
    return kv, (kv.rank, kv.num_workers)


def init_model(prepared, contexts) -> None:
    """Initialise the prepared model on ``contexts`` and hybridize it, as training does."""
    prepared.model.initialize(mx.init.Xavier(), ctx=contexts)
    prepared.model.hybridize(static_alloc=True)


def train(cfg: RunConfig, out: str | Path, resume: bool = False, debug: bool = False) -> dict:
    """Train ``cfg.task`` into ``out``; returns the final report (also ``report.json``)."""
    out = Path(out)
    kvstore, shard = _kvstore(cfg)
    if shard[1] > 1:  # each distributed worker keeps its own run directory
        out = out / f"worker-{shard[0]}"
    _check_output_dir(out, cfg, resume)
    contexts = parse_contexts(cfg.train.ctx)
    seed_everything(cfg.train.seed)
    started = time.time()
    prepared = tasks.prepare(cfg, shard=shard)  # bad data stops here, before any file is made
    init_model(prepared, contexts)
    _make_output_dir(out)
    setup_logging(out, debug=debug)
    files = {"config.json": cfg.to_json(), "meta.json": json.dumps(prepared.meta, indent=2),
             **prepared.files}
    for name, text in files.items():
        _write_output(out / name, text)
    log.info("task %s: %s; training on %s", cfg.task, prepared.meta.get("counts"),
             ", ".join(str(c) for c in contexts))
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, out, contexts, files,
                    kvstore=kvstore)
    state = fitter.fit(prepared.train_loader, prepared.valid_loader,
                       prepared.steps_per_epoch, resume=resume)
    best = find_checkpoint(out, "best")
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
        raise TrainingError(f"{out / 'report.json'}: cannot write ({err.strerror or err})") \
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
        raise TrainingError(f"{path}: cannot write ({err.strerror or err})") from None


def baseline(prepared) -> dict:
    """A simple reference: majority-class accuracy, mean-predictor MSE, unigram perplexity
    (add-one smoothing) or the memoryless copy-task cross-entropy."""
    kind = prepared.meta["kind"]
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
        from mxlstm.training.config import apply_overrides
        cfg = apply_overrides(cfg, {"data.path": data, "data.test_path": test_data or data},
                              "--data")
    prepared, cfg, meta = load_model(model_dir, cfg, meta)
    fitter = Fitter(prepared.model, prepared.objective, cfg.train, model_dir, [mx.cpu()])
    return {"task": cfg.task, "model": str(model_dir), "data": data or "task default",
            "test": fitter.evaluate(prepared.test_loader)}

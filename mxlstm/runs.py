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
from mxlstm.errors import ConfigError, ModelFileError
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


def _check_output_dir(out: Path, cfg: RunConfig, resume: bool) -> None:
    """Refuse to overwrite another run; make sure the directory is writable."""
    saved = out / "config.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        if not resume:
            raise ConfigError(f"{out} already holds a run (task {old.get('task')!r}); "
                              f"use --resume to continue it or choose another --out")
        if old.get("task") != cfg.task:
            raise ConfigError(f"{out} holds a run of task {old.get('task')!r}, not "
                              f"{cfg.task!r}")
        changed = sorted(k for k, v in _flat(config_from_dict(old)).items()
                         if _flat(cfg)[k] != v and k not in RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(f"{out}: --resume continues the run as it was configured; "
                              f"these keys differ from its config.json: {', '.join(changed)}")
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
    return kv, (kv.rank, kv.num_workers)


def _init_model(prepared, contexts) -> None:
    prepared.model.initialize(mx.init.Xavier(), ctx=contexts)
    prepared.model.hybridize(static_alloc=True)


def train(cfg: RunConfig, out: str | Path, resume: bool = False, debug: bool = False) -> dict:
    """Train ``cfg.task`` into ``out``; returns the final report (also ``report.json``)."""
    out = Path(out)
    kvstore, shard = _kvstore(cfg)
    if shard[1] > 1:  # each distributed worker keeps its own run directory
        out = out / f"worker-{shard[0]}"
    _check_output_dir(out, cfg, resume)
    setup_logging(out, debug=debug)
    contexts = parse_contexts(cfg.train.ctx)
    seed_everything(cfg.train.seed)
    started = time.time()
    prepared = tasks.prepare(cfg, shard=shard)
    _init_model(prepared, contexts)
    files = {"config.json": cfg.to_json(), "meta.json": json.dumps(prepared.meta, indent=2),
             **prepared.files}
    for name, text in files.items():
        write_atomic(out / name, text)
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
    write_report(out / "report.json", report)
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    if "confusion" in test:
        plot_confusion(np.array(test["confusion"]), prepared.meta["label_names"],
                       out / "confusion.png")
    return report


def baseline(prepared) -> dict:
    """A simple reference: majority class accuracy, or mean-predictor MSE."""
    kind = prepared.meta["kind"]
    if kind in ("sequence_classification", "text_classification"):
        from mxlstm.training.metrics import majority_baseline
        train = np.concatenate([b[1].asnumpy() for b in prepared.train_loader])
        test = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
        return {"majority_accuracy": majority_baseline(train, test)}
    if kind == "regression":
        targets = np.concatenate([b[1].asnumpy() for b in prepared.test_loader])
        return {"mean_predictor_mse": float(np.var(targets))}
    return {}


def load_run(model_dir: str | Path) -> tuple[RunConfig, dict]:
    """The configuration and artefacts (meta + extra files) of a trained model directory."""
    model_dir = Path(model_dir)
    try:
        tree = json.loads((model_dir / "config.json").read_text())
        meta = json.loads((model_dir / "meta.json").read_text())
    except FileNotFoundError as err:
        raise ModelFileError(f"{model_dir}: not a model directory ({err.filename} is "
                             f"missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{model_dir}: config.json or meta.json is damaged: {err}") \
            from None
    cfg = config_from_dict(tree)
    if meta.get("task") != cfg.task:
        raise ModelFileError(f"{model_dir}: meta.json is of task {meta.get('task')!r} but "
                             f"config.json of {cfg.task!r}")
    meta["files"] = {p.name: p.read_text() for p in model_dir.glob("vocab.json")}
    return cfg, meta


def load_model(model_dir: str | Path, cfg: RunConfig | None = None, meta: dict | None = None,
               tag: str = "best", ctx: list | None = None):
    """Rebuild the trained model of ``model_dir`` (checkpoint ``tag``); returns
    ``(prepared, cfg, meta)`` with the parameters loaded."""
    if cfg is None or meta is None:
        cfg, meta = load_run(model_dir)
    contexts = ctx or [mx.cpu()]
    prepared = tasks.prepare(cfg, artefacts=meta)
    _init_model(prepared, contexts)
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

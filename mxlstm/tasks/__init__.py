"""The task registry: task name -> preset, data, model and objective.

Each task module provides ``PRESETS`` (config overrides per task), ``IGNORED`` (per task,
the config keys it does not read) and ``prepare(cfg, artefacts)`` returning a
:class:`~mxlstm.tasks.base.Prepared`. ``artefacts`` is None when training
(vocabulary, normalisation and label names are fitted on the training split) and the
saved ``meta.json`` of a model directory when evaluating (nothing is refitted).
A module may provide ``training_size(cfg)``, the number of training series before any
validation split (read for ``train.small_data``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from mxlstm.config import RunConfig, apply_overrides
from mxlstm.config_toml import describe, read_toml
from mxlstm.errors import ConfigError
from mxlstm.tasks import language_model, regression, sequences, synthetic, text
from mxlstm.tasks.base import Prepared, check_model_size, model_tensors

log = logging.getLogger(__name__)

TASKS: dict[str, tuple[ModuleType, str]] = {
    "digits": (sequences, "digits"),
    "vowels": (sequences, "vowels"),
    "uea": (sequences, "uea"),
    "series-regression": (regression, "series-regression"),
    "text": (text, "text"),
    "lm": (language_model, "lm"),
    "adding": (synthetic, "adding"),
    "copy": (synthetic, "copy"),
}


def task_module(task: str) -> ModuleType:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task][0]


def default_config(task: str) -> RunConfig:
    """The base defaults with the task's preset applied."""
    module = task_module(task)
    return apply_overrides(RunConfig(task=task), module.PRESETS[task], f"preset of {task}")


def ignored_keys(task: str) -> frozenset[str]:
    """The ``section.key`` names task ``task`` does not read."""
    return frozenset(task_module(task).IGNORED[task])


def check_used(task: str, overrides: dict[str, Any], source: str) -> None:
    """Refuse keys the user set that ``task`` would ignore (presets and saved
    ``config.json`` files are not checked)."""
    for key in overrides:
        if key in ignored_keys(task):
            raise ConfigError(f"{source}: config key {key} is not used by task {task}")


def user_config(task: str, config_file: str | Path | None = None,
                flags: dict[str, Any] | None = None,
                layers: list[tuple[dict, str]] | None = None) -> RunConfig:
    """The effective configuration: defaults < preset < TOML file < flags, where unknown
    keys, keys the task ignores and a file of another task are errors, and a model too big
    to allocate is refused before any data is read. ``layers`` (``(overrides, source)``
    pairs, e.g. from the CLI) replaces ``config_file`` and ``flags``. A preset's
    ``train.min_steps`` is dropped when the user gives ``train.epochs`` or
    ``train.max_batches`` (and not ``train.min_steps`` itself)."""
    cfg = default_config(task)
    if layers is None:
        layers = []
        if config_file is not None:
            layers.append((read_toml(config_file, task=task), str(config_file)))
        layers.append((flags or {}, "command line"))
    for overrides, source in layers:
        cfg = apply_overrides(cfg, overrides, source)  # unknown keys, types, ranges first
        check_used(task, overrides, source)
    given = {key for overrides, _ in layers for key in overrides}
    if cfg.train.min_steps and "train.min_steps" not in given and \
            given & {"train.epochs", "train.max_batches"}:  # the user chose the length
        cfg = apply_overrides(cfg, {"train.min_steps": 0}, "train.epochs given")
    blocking = given & (SMALL_DATA_KEYS | {"train.epochs", "train.max_batches"})
    if cfg.train.small_data and blocking and "train.small_data" not in given:
        cfg = apply_overrides(cfg, {"train.small_data": 0},  # the user chose the protocol
                              f"{sorted(blocking)[0]} given")
    ignored = ignored_keys(task)
    tokens = "model.embed_size" not in ignored
    check_model_size(cfg, model_tensors(cfg, cfg.model.embed_size if tokens else 1,
                                        language_model="model.tie_weights" not in ignored))
    return cfg


# train.small_data: what a small training split gets, and the keys that choose otherwise
SMALL_DATA_RULE = {"train.select": "last", "data.valid_fraction": 0.0, "train.ensemble": 3}
SMALL_DATA_KEYS = frozenset({*SMALL_DATA_RULE, "data.valid_path"})


def resolve_small_data(cfg: RunConfig) -> RunConfig:
    """Apply ``train.small_data`` (run once, before training; the data is read to count
    the training series): below the threshold the keys of :data:`SMALL_DATA_RULE`, logged.
    Either way ``train.small_data`` becomes 0 in the returned (recorded) configuration,
    so the run, its ensemble members and a resume see only the resolved keys."""
    if not cfg.train.small_data:
        return cfg
    counter = getattr(task_module(cfg.task), "training_size", None)
    size = counter(cfg) if counter is not None else None
    if size is not None and size < cfg.train.small_data:
        log.info("train.small_data=%d: %d training series, so %s", cfg.train.small_data, size,
                 ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in SMALL_DATA_RULE.items()))
        cfg = apply_overrides(cfg, SMALL_DATA_RULE,
                              f"train.small_data ({size} training series)")
    return apply_overrides(cfg, {"train.small_data": 0}, "train.small_data resolved")


def config_file_text(cfg: RunConfig) -> str:
    """``cfg`` as the TOML file ``mxlstm config`` prints: only the keys ``cfg.task`` uses,
    values marked against its preset."""
    return describe(cfg, preset=default_config(cfg.task), hidden=ignored_keys(cfg.task))


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    """Data loaders, model and objective for ``cfg.task``; ``shard = (rank, workers)``
    gives a distributed worker its part of the training data."""
    from mxlstm.data.validate import input_limit

    with input_limit(cfg.data.max_input_mb):  # every file read below is capped
        return task_module(cfg.task).prepare(cfg, artefacts, shard)


__all__ = ["TASKS", "Prepared", "check_used", "config_file_text", "default_config",
           "ignored_keys", "prepare", "task_module", "user_config"]

"""The task registry: task name -> preset, data, model and objective.

Each task module provides ``PRESET`` (config overrides) and ``prepare(cfg, artefacts)``
returning a :class:`~mxlstm.tasks.base.Prepared`. ``artefacts`` is None when training
(vocabulary, normalisation and label names are fitted on the training split) and the
saved ``meta.json`` of a model directory when evaluating (nothing is refitted).
"""

from __future__ import annotations

from types import ModuleType

from mxlstm.errors import ConfigError
from mxlstm.tasks import language_model, sequences, synthetic, text
from mxlstm.tasks.base import Prepared
from mxlstm.training.config import RunConfig, apply_overrides

TASKS: dict[str, tuple[ModuleType, str]] = {
    "digits": (sequences, "digits"),
    "vowels": (sequences, "vowels"),
    "uea": (sequences, "uea"),
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


def prepare(cfg: RunConfig, artefacts: dict | None = None,
            shard: tuple[int, int] = (0, 1)) -> Prepared:
    """Data loaders, model and objective for ``cfg.task``; ``shard = (rank, workers)``
    gives a distributed worker its part of the training data."""
    from mxlstm.data.validate import input_limit

    with input_limit(cfg.data.max_input_mb):  # every file read below is capped
        return task_module(cfg.task).prepare(cfg, artefacts, shard)


__all__ = ["TASKS", "Prepared", "default_config", "prepare", "task_module"]

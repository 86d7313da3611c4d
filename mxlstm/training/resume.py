"""The resume rule: ``--resume`` continues the recorded run exactly (docs/cli.md, "Resume
and the run directory"). What a resume may change, the configuration it runs with, and
whether a run is finished."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mxlstm.config import RunConfig, apply_overrides, config_from_dict
from mxlstm.errors import ConfigError, ModelFileError
from mxlstm.training.checkpoint import checkpoint_epoch, find_checkpoint

log = logging.getLogger(__name__)


# keys a resume may change: they decide where and how fast, not what is computed
RESUMABLE_CHANGES = {"train.progress", "train.ctx", "train.kvstore", "data.num_workers"}


def _flat(cfg: RunConfig) -> dict:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items()
            if isinstance(values, dict) for key, value in values.items()}


def read_json(path: Path, model_dir: Path) -> dict:
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
    return config_from_dict(read_json(saved, out), str(saved))


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
    if (old.train.min_steps and now["train.min_steps"] == old.train.min_steps
            and now["train.epochs"] <= old.train.epochs):  # raised by train.min_steps
        cfg = apply_overrides(cfg, {"train.epochs": old.train.epochs}, "train.min_steps")
        now = _flat(cfg)
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


def require_best(out: Path, latest: Path) -> None:
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


def finished(checkpoint: Path, cfg: RunConfig) -> bool:
    try:
        state = json.loads((checkpoint / "state.json").read_text("utf-8"))
        return bool(state.get("stopped_early")) or int(state["epoch"]) >= cfg.train.epochs
    except (OSError, ValueError, KeyError, TypeError):
        return False


def finished_report(out: Path) -> dict | None:
    """The report of a finished run (None if it was killed before writing it)."""
    try:
        report = read_json(out / "report.json", out)
    except ModelFileError:
        return None
    log.warning("%s: the run is finished (epoch %s, best epoch %s); nothing to train. "
                "Use --resume --extend-epochs N to train N more epochs", out,
                report.get("epochs_run"), report.get("best_epoch"))
    return {**report, "already_finished": True}

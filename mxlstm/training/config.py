"""Typed, frozen run configuration: defaults < task preset < TOML file < ``--set key=value``.

Every key has a default and a help string (``mxlstm config --task T`` prints them all).
Keys are ``section.name`` with sections ``data``, ``model`` and ``train``; the effective
configuration is saved as ``config.json`` in the run directory and travels with every
checkpoint and export.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxlstm.errors import ConfigError


def opt(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A config field with its help text (and allowed values)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class DataConfig:
    path: str = opt("", "training data file(s), comma-separated; empty = the task's embedded set")
    test_path: str = opt("", "test data file; empty = the task's own test split")
    name: str = opt("JapaneseVowels", "embedded UEA set for task 'uea' "
                    "(JapaneseVowels, GunPoint, ItalyPowerDemand)")
    text_field: str = opt("text", "text column / JSON key (task 'text')")
    label_field: str = opt("label", "label column / JSON key (task 'text')")
    header: str = opt("auto", "TSV/CSV header row: auto (the first row names the fields; "
                      "a first row that only looks like a header is refused), true, false "
                      "(columns text, label)", ("auto", "true", "false"))
    max_input_mb: int = opt(1024, "largest input file in MB, on disk and decompressed "
                            "(reading stops past it)")
    level: str = opt("word", "tokens: 'word' or 'char'", ("word", "char"))
    max_vocab: int = opt(20000, "largest vocabulary (most frequent training tokens)")
    min_freq: int = opt(1, "least count for a token to enter the vocabulary")
    max_length: int = opt(0, "truncate sequences to this many steps (0 = no limit)")
    valid_fraction: float = opt(0.1, "share of the training split held out for validation")
    normalize: bool = opt(True, "per-channel normalisation with training-split statistics")
    augment: str = opt("", "training augmentations, e.g. 'shift:0.1,jitter:0.03' "
                       "(see docs/cli.md); empty = none")
    num_buckets: int = opt(0, "length buckets for variable-length batches (0 = none)")
    num_workers: int = opt(0, "DataLoader worker processes")
    seq_length: int = opt(100, "sequence length T of synthetic tasks (adding, copy)")
    num_train: int = opt(20000, "training sequences of synthetic tasks")
    num_eval: int = opt(2000, "validation and test sequences of synthetic tasks")
    copy_length: int = opt(10, "symbols to remember in the copy task")
    bptt: int = opt(35, "language model: steps per truncated-backprop batch")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = opt("lstm", "memory cell", ("lstm", "gru", "rnn"))
    hidden_size: int = opt(128, "units per recurrent layer (H)")
    num_layers: int = opt(1, "stacked recurrent layers")
    bidirectional: bool = opt(False, "read sequences in both directions")
    dropout: float = opt(0.0, "dropout between recurrent layers")
    fused: str = opt("auto", "fused kernel: auto (when exact), true (required), false",
                     ("auto", "true", "false"))
    embed_size: int = opt(128, "token embedding size")
    input_projection: int = opt(0, "dense tanh layer before the encoder (0 = none)")
    embedding_dropout: float = opt(0.0, "drop whole words of the embedding")
    input_dropout: float = opt(0.0, "locked dropout on the encoder input")
    output_dropout: float = opt(0.0, "locked dropout on the encoder output (language model)")
    weight_dropout: float = opt(0.0, "DropConnect on hidden-to-hidden weights")
    recurrent_dropout: float = opt(0.0, "variational dropout on h (gate-level path)")
    zoneout: float = opt(0.0, "zoneout probability (gate-level path)")
    peephole: bool = opt(False, "LSTM peephole connections (gate-level path)")
    layer_norm: bool = opt(False, "LSTM layer normalisation (gate-level path)")
    cell_clip: float = opt(0.0, "clip the LSTM cell state to [-v, v] (0 = off)")
    projection_size: int = opt(0, "LSTM output projection size (0 = off)")
    forget_bias: float = opt(1.0, "initial LSTM forget-gate bias")
    chrono_init: int = opt(0, "chrono initialisation of LSTM gate biases for dependencies up "
                           "to this many steps, instead of forget_bias (0 = off)")
    pooling: str = opt("last", "sequence summary for classifiers", ("last", "mean", "max"))
    head_units: str = opt("", "hidden dense layers of the head, e.g. '256' or '256,128'")
    head_dropout: float = opt(0.0, "dropout in the head")
    tie_weights: bool = opt(False, "language model: decoder shares the embedding matrix")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(20, "passes over the training data")
    batch_size: int = opt(64, "sequences per batch (over all contexts)")
    optimizer: str = opt("adam", "optimizer", ("adam", "sgd", "rmsprop", "bertadam"))
    lr: float = opt(1e-3, "learning rate")
    weight_decay: float = opt(0.0, "L2 (decoupled for bertadam)")
    schedule: str = opt("none", "learning-rate schedule", ("none", "cosine", "step", "plateau"))
    warmup_steps: int = opt(0, "linear warm-up steps (cosine schedule)")
    step_epochs: int = opt(10, "step schedule: epochs between decays")
    decay_factor: float = opt(0.5, "step / plateau schedule: learning-rate factor")
    clip_norm: float = opt(5.0, "clip gradients to this global norm (0 = off)")
    early_stopping: int = opt(0, "stop after this many epochs without improvement (0 = off)")
    monitor: str = opt("", "validation metric for best model / early stopping "
                       "(empty = the task's)")
    seed: int = opt(0, "seeds Python, numpy, MXNet, shuffling and augmentation")
    ctx: str = opt("cpu", "contexts: cpu, cpu:0,1, gpu:0 or gpu:0,1 (data parallel)")
    kvstore: str = opt("device", "gluon.Trainer kvstore (device, local, dist_sync, ...)")
    nan_policy: str = opt("stop", "non-finite loss: stop the run or skip the batch",
                          ("stop", "skip"))
    max_batches: int = opt(0, "stop each epoch after this many batches (0 = all)")
    eval_batch_size: int = opt(256, "batch size for evaluation")
    progress: bool = opt(True, "tqdm progress bars")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    task: str
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Allowed ranges of numeric keys (checked after type coercion).
_AT_LEAST_ONE = {"data.max_vocab", "data.min_freq", "data.seq_length", "data.num_train",
                 "data.num_eval", "data.copy_length", "data.bptt", "model.hidden_size",
                 "model.num_layers", "model.embed_size", "train.epochs", "train.batch_size",
                 "train.step_epochs", "train.eval_batch_size"}
_AT_LEAST_ONE.add("data.max_input_mb")
_AT_LEAST_ZERO = {"data.max_length", "data.num_buckets", "data.num_workers",
                  "model.input_projection", "model.cell_clip", "model.projection_size",
                  "train.lr", "train.weight_decay", "train.warmup_steps", "train.clip_norm",
                  "train.early_stopping", "train.max_batches"}
_PROBABILITIES = {"model.dropout", "model.embedding_dropout", "model.input_dropout",
                  "model.output_dropout", "model.weight_dropout", "model.recurrent_dropout",
                  "model.zoneout", "model.head_dropout"}
_UNITS = re.compile(r"\s*[0-9]*[1-9][0-9]*\s*")


def _check_range(key: str, value: Any) -> str | None:
    """What is wrong with the (coerced) ``value`` of ``key``, or None."""
    if key in _AT_LEAST_ONE and value < 1:
        return "must be at least 1"
    if key in _AT_LEAST_ZERO and not value >= 0:
        return "must be at least 0"
    if key in _PROBABILITIES and not 0 <= value < 1:
        return "must be in [0, 1)"
    if key == "data.valid_fraction" and not 0 < value < 1:
        return "must be between 0 and 1 (exclusive)"
    if key == "model.head_units" and not all(_UNITS.fullmatch(u) for u in value.split(",")
                                             if u.strip()):
        return "expected comma-separated positive integers, e.g. '256,128'"
    return None


def _parse(key: str, value: Any, default: Any, choices: tuple | None,
           source: str = "") -> Any:
    """Coerce ``value`` (a string from the command line, or a TOML value) to the field type."""
    kind = type(default)
    where = f"{source}: " if source else ""
    try:
        if kind is bool:
            if isinstance(value, bool):
                parsed = value
            elif str(value).lower() in ("1", "true", "yes", "on"):
                parsed = True
            elif str(value).lower() in ("0", "false", "no", "off"):
                parsed = False
            else:
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            parsed = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            parsed = float(value)
        else:
            parsed = str(value).lower() if choices else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}config key {key}: expected {kind.__name__}, "
                          f"got {value!r}") from None
    if choices and parsed not in choices:
        raise ConfigError(f"{where}config key {key}: {value!r} is not one of "
                          f"{', '.join(choices)}")
    problem = _check_range(key, parsed)
    if problem:
        raise ConfigError(f"{where}config key {key}: {problem}, got {value!r}")
    return parsed


def apply_overrides(config: RunConfig, overrides: dict[str, Any], source: str) -> RunConfig:
    """Return ``config`` with ``{'section.key': value}`` applied; unknown keys are errors."""
    sections = {name: dataclasses.asdict(getattr(config, name)) for name in SECTIONS}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(f"{source}: unknown config key {key!r} "
                              f"(keys look like data.path, model.hidden_size, train.lr)")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        if name not in fields:
            near = ", ".join(sorted(n for n in fields if n[:3] == name[:3])) or \
                ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown config key {key!r}; {section} keys: {near}")
        f = fields[name]
        sections[section][name] = _parse(key, value, f.default, f.metadata.get("choices"),
                                         source)
    return RunConfig(task=config.task, **{name: SECTIONS[name](**values)
                                          for name, values in sections.items()})


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``['model.hidden_size=64', ...]`` -> ``{'model.hidden_size': '64'}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. model.hidden_size=64")
        overrides[key.strip()] = value.strip()
    return overrides


def read_toml(path: str | Path) -> dict[str, Any]:
    """Flatten a TOML file with ``[data]``, ``[model]``, ``[train]`` tables into dotted keys."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            tree = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    flat: dict[str, Any] = {}
    for section, table in tree.items():
        if section == "task":
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: top-level key {section!r} must be a [section] table")
        for name, value in table.items():
            flat[f"{section}.{name}"] = value
    return flat


def config_from_dict(tree: dict, source: str = "config.json") -> RunConfig:
    """Rebuild a saved ``config.json`` (unknown keys are errors: a foreign file);
    ``source`` names the file in messages."""
    try:
        flat = {f"{s}.{k}": v for s in SECTIONS for k, v in tree[s].items()}
        task = tree["task"]
    except KeyError as err:
        raise ConfigError(f"{source}: not an mxlstm run configuration (no {err} key)") from None
    except (TypeError, AttributeError) as err:
        raise ConfigError(f"{source}: not an mxlstm run configuration ({err})") from None
    if not isinstance(task, str):
        raise ConfigError(f"{source}: not an mxlstm run configuration (task {task!r})")
    return apply_overrides(RunConfig(task=task), flat, source)


def describe(config: RunConfig) -> str:
    """Every key with its value and help text (for ``mxlstm config`` and the docs)."""
    lines = [f"task = {config.task}"]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        values = getattr(config, section)
        for f in dataclasses.fields(cls):
            choices = f.metadata.get("choices")
            extra = f" ({'|'.join(choices)})" if choices else ""
            lines.append(f"{f.name} = {getattr(values, f.name)!r:<14} # {f.metadata['help']}"
                         f"{extra}")
    return "\n".join(lines)

"""Typed, frozen run configuration: defaults < task preset < TOML file < ``--set key=value``.

Every key has a default and a help string (``mxlstm config --task T`` prints them all). Keys are
``section.name`` with sections ``data``, ``model`` and ``train``; the effective configuration is
saved as ``config.json`` in the run directory and travels with every checkpoint and export.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mxlstm.errors import ConfigError

# Caps where MXNet would otherwise fail deep inside (its pip build allows at most 2^31 - 1
# elements per tensor); the model-size estimate of mxlstm.tasks checks the combinations.
MAX_UNITS = 65536
MAX_BATCH = 1 << 20
# Names gluon.Trainer(kvstore=...) of MXNet 1.9.1 accepts with update_on_kvstore=False on a
# CPU build (mx.kv.create takes any other string silently as a local store; dist_async
# requires update_on_kvstore=True, nccl a GPU build with NCCL).
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_sync_device")


def opt(default: Any, help: str, choices: tuple | None = None, *, low: float | None = None,
        high: float | None = None, above: float | None = None, below: float | None = None,
        check: Any = None) -> Any:
    """A config field with its help text, allowed values and range: ``low <= v <= high``,
    ``above < v < below``; ``check(value)`` returns what else is wrong, or None."""
    return field(default=default, metadata={
        "help": help, "choices": choices, "low": low, "high": high, "above": above,
        "below": below, "check": check})


_UNITS = re.compile(r"\s*[0-9]*[1-9][0-9]*\s*")


def _units(value: str) -> str | None:
    if not all(_UNITS.fullmatch(u) for u in value.split(",") if u.strip()):
        return "expected comma-separated positive integers, e.g. '256,128'"
    if any(int(u) > MAX_UNITS for u in value.split(",") if u.strip()):
        return f"layers of at most {MAX_UNITS} units"
    return None


def _chrono(value: int) -> str | None:
    if value in (1, 2):  # ChronoBias draws from uniform(1, T - 1)
        return "must be 0 (off), -1 (the longest training series) or at least 3"
    return None


@dataclass(frozen=True)
class DataConfig:
    path: str = opt("", "training data file(s), comma-separated; empty = the task's embedded set")
    test_path: str = opt("", "test data file; empty = the task's own test split")
    valid_path: str = opt("", "validation data file; empty = held out from the training data")
    name: str = opt("JapaneseVowels", "embedded UEA set for task 'uea' (JapaneseVowels, "
                    "GunPoint, ItalyPowerDemand, OSULeaf, ACSF1) or 'series-regression' "
                    "(Tecator)")
    text_field: str = opt("text", "text column / JSON key (task 'text')")
    label_field: str = opt("label", "label column / JSON key (task 'text')")
    header: str = opt("auto", "TSV/CSV header row: auto (the first row names the fields; "
                      "a first row that only looks like a header is refused), true, false "
                      "(columns text, label)", ("auto", "true", "false"))
    max_input_mb: int = opt(1024, "largest input file in MB, on disk and decompressed "
                            "(reading stops past it)", low=1, high=1_000_000)
    level: str = opt("word", "tokens: 'word' or 'char'", ("word", "char"))
    max_vocab: int = opt(20000, "largest vocabulary (most frequent training tokens)",
                          low=1, high=10_000_000)
    min_freq: int = opt(1, "least count for a token to enter the vocabulary", low=1)
    max_length: int = opt(0, "truncate sequences to this many steps (0 = no limit)", low=0)
    valid_fraction: float = opt(0.1, "share of the training split held out for validation "
                                "(0 = none: every training series trains, with "
                                "train.select=last)", low=0, below=1)
    normalize: bool = opt(True, "per-channel normalisation with training-split statistics")
    augment: str = opt("", "training augmentations, e.g. 'shift:0.1,jitter:0.03' "
                       "(see docs/cli.md); empty = none")
    num_buckets: int = opt(0, "length buckets for variable-length batches (0 = none)",
                            low=0, high=10_000)
    num_workers: int = opt(0, "DataLoader worker processes", low=0, high=256)
    seq_length: int = opt(100, "sequence length T of synthetic tasks (adding, copy)",
                           low=1, high=100_000)
    num_train: int = opt(20000, "training sequences of synthetic tasks", low=1, high=10_000_000)
    num_eval: int = opt(2000, "validation and test sequences of synthetic tasks",
                         low=1, high=10_000_000)
    copy_length: int = opt(10, "symbols to remember in the copy task", low=1, high=100_000)
    bptt: int = opt(35, "language model: steps per truncated-backprop batch", low=1, high=100_000)


@dataclass(frozen=True)
class ModelConfig:
    cell: str = opt("lstm", "memory cell", ("lstm", "gru", "rnn"))
    hidden_size: int = opt(128, "units per recurrent layer (H)", low=1, high=MAX_UNITS)
    num_layers: int = opt(1, "stacked recurrent layers", low=1, high=64)
    bidirectional: bool = opt(False, "read sequences in both directions")
    dropout: float = opt(0.0, "dropout between recurrent layers", low=0, below=1)
    fused: str = opt("auto", "fused kernel: auto (when exact), true (required), false",
                     ("auto", "true", "false"))
    embed_size: int = opt(128, "token embedding size", low=1, high=MAX_UNITS)
    input_projection: int = opt(0, "dense tanh layer before the encoder (0 = none)",
                                 low=0, high=MAX_UNITS)
    embedding_dropout: float = opt(0.0, "drop whole words of the embedding", low=0, below=1)
    input_dropout: float = opt(0.0, "locked dropout on the encoder input", low=0, below=1)
    output_dropout: float = opt(0.0, "locked dropout on the encoder output (language model)",
                                 low=0, below=1)
    weight_dropout: float = opt(0.0, "DropConnect on hidden-to-hidden weights", low=0, below=1)
    recurrent_dropout: float = opt(0.0, "variational dropout on h (gate-level path)",
                                    low=0, below=1)
    zoneout: float = opt(0.0, "zoneout probability (gate-level path)", low=0, below=1)
    peephole: bool = opt(False, "LSTM peephole connections (gate-level path)")
    layer_norm: bool = opt(False, "LSTM layer normalisation (gate-level path)")
    cell_clip: float = opt(0.0, "clip the LSTM cell state to [-v, v] (0 = off)", low=0)
    projection_size: int = opt(0, "LSTM output projection size (0 = off)", low=0, high=MAX_UNITS)
    forget_bias: float = opt(1.0, "initial LSTM forget-gate bias")
    chrono_init: int = opt(0, "chrono initialisation of LSTM gate biases for dependencies up "
                           "to this many steps, instead of forget_bias (0 = off, -1 = the "
                           "longest training series of a series task)",
                           low=-1, high=10_000_000, check=_chrono)
    family: str = opt("lstm", "series model: lstm (recurrent encoder) or lstm_fcn (plus a "
                      "convolutional branch, Karim et al. 2017)", ("lstm", "lstm_fcn"))
    conv_filters: str = opt("128,256,128", "lstm_fcn: filters of the convolutional layers "
                            "(kernels 8, 5, 3)", check=_units)
    max_steps: int = opt(0, "series models: average windows of steps so that the longest "
                         "training series has at most this many (0 = off)",
                         low=0, high=10_000_000)
    conv_steps: int = opt(-1, "lstm_fcn: the convolutional branch reads windows averaged to at "
                          "most this many steps (0 = every step, -1 = as the recurrent "
                          "branch: model.max_steps)", low=-1, high=10_000_000)
    conv_fine_steps: int = opt(-1, "lstm_fcn: a second convolutional branch reads windows to "
                               "at most this many steps where finer (-1 = off, 0 = every step)",
                               low=-1, high=10_000_000)
    window_stats: str = opt("mean", "series models: a window of steps becomes its mean, or "
                            "(meanmaxmin) its mean, max and min", ("mean", "meanmaxmin"))
    series_norm: str = opt("false", "z-normalise each series per channel over its own steps "
                           "inside the model (series tasks): true, false, auto (only "
                           "univariate series), level (z-normalised series plus each "
                           "series' mean and log-std as channels)",
                           ("auto", "true", "false", "level"))
    pooling: str = opt("last", "sequence summary for classifiers", ("last", "mean", "max"))
    head_units: str = opt("", "hidden dense layers of the head, e.g. '256' or '256,128'",
                          check=_units)
    head_dropout: float = opt(0.0, "dropout in the head", low=0, below=1)
    tie_weights: bool = opt(False, "language model: decoder shares the embedding matrix")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(20, "passes over the training data", low=1, high=1_000_000)
    batch_size: int = opt(64, "sequences per batch (over all contexts)", low=1, high=MAX_BATCH)
    optimizer: str = opt("adam", "optimizer", ("adam", "sgd", "rmsprop", "bertadam"))
    lr: float = opt(1e-3, "learning rate", low=0)
    weight_decay: float = opt(0.0, "L2 (decoupled for bertadam)", low=0)
    schedule: str = opt("none", "learning-rate schedule", ("none", "cosine", "step", "plateau"))
    warmup_steps: int = opt(0, "linear warm-up steps (cosine schedule)", low=0)
    step_epochs: int = opt(10, "step schedule: epochs between decays", low=1)
    decay_factor: float = opt(0.5, "step / plateau schedule: learning-rate factor")
    clip_norm: float = opt(5.0, "clip gradients to this global norm (0 = off)", low=0)
    early_stopping: int = opt(0, "stop after this many epochs without improvement (0 = off)", low=0)
    monitor: str = opt("", "validation metric for best model / early stopping "
                       "(empty = the task's)")
    select: str = opt("best", "the model kept: best (the epoch with the best validation "
                      "metric) or last (the final epoch, at the end of the schedule)",
                      ("best", "last"))
    seed: int = opt(0, "seeds Python, numpy, MXNet, shuffling and augmentation")
    ctx: str = opt("cpu", "contexts: cpu, cpu:0,1, gpu:0 or gpu:0,1 (data parallel)")
    kvstore: str = opt("device", "gluon.Trainer kvstore: device or local on one machine, dist_* "
                       "with mxlstm launch (dist_async and nccl: not with this trainer "
                       "and build)", KVSTORES)
    nan_policy: str = opt("stop", "non-finite loss: stop the run or skip the batch",
                          ("stop", "skip"))
    max_batches: int = opt(0, "stop each epoch after this many batches (0 = all)", low=0)
    min_steps: int = opt(0, "train at least this many optimizer steps: the epochs are raised "
                         "when the training split is small (0 = off; a preset's value is "
                         "dropped when train.epochs or train.max_batches is given)", low=0,
                         high=100_000_000)
    eval_batch_size: int = opt(256, "batch size for evaluation", low=1, high=MAX_BATCH)
    progress: bool = opt(True, "tqdm progress bars")
    ensemble: int = opt(1, "train this many seeds (seed, seed+1, ...) and average their "
                        "probabilities / predictions", low=1, high=32)
    small_data: int = opt(0, "a training split of fewer series than this trains on every "
                          "series, keeps the final epoch and averages 3 seeds (train.select="
                          "last, data.valid_fraction=0, train.ensemble=3; 0 = off; a "
                          "preset's value is dropped when any of those keys, "
                          "data.valid_path, train.epochs or train.max_batches is given "
                          "and train.small_data is not)",
                          low=0, high=100_000_000)


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


def _check_range(meta: dict, value: Any) -> str | None:
    """What is wrong with the (coerced) ``value`` of a field with metadata ``meta``, or None."""
    low, high, above, below = (meta.get(k) for k in ("low", "high", "above", "below"))
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if above is not None and below is not None and not above < value < below:
        return f"must be between {above:g} and {below:g} (exclusive)"
    if low is not None and below is not None and not low <= value < below:
        return f"must be in [{low:g}, {below:g})"
    if low is not None and high is not None and not low <= value <= high:
        return f"must be at least {low:g}" if value < low else f"must be at most {high}"
    if low is not None and high is None and not value >= low:
        return f"must be at least {low:g}"
    check = meta.get("check")
    return check(value) if check else None


def _parse(key: str, value: Any, default: Any, meta: dict, source: str = "") -> Any:
    """Coerce ``value`` (a string from the command line, or a TOML value) to the field type."""
    kind = type(default)
    choices = meta.get("choices")
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
            if isinstance(value, (dict, list)):
                raise ValueError
            parsed = str(value).lower() if choices else str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}config key {key}: expected {kind.__name__}, "
                          f"got {value!r}") from None
    if choices and parsed not in choices:
        raise ConfigError(f"{where}config key {key}: {value!r} is not one of "
                          f"{', '.join(choices)}")
    problem = _check_range(meta, parsed)
    if problem:
        raise ConfigError(f"{where}config key {key}: {problem}, got {value!r}")
    return parsed


def all_keys() -> list[str]:
    """Every ``section.name`` key, in declaration order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def did_you_mean(key: str) -> str:
    """`` did you mean train.epochs?`` for a mistyped ``key`` (empty when nothing is close):
    the same name in another section, else a close name in the same section, else a close
    name or key anywhere."""
    keys = all_keys()
    by_name = {k.partition(".")[2]: k for k in keys}
    section, _, name = key.rpartition(".")
    if name in by_name:
        return f"; did you mean {by_name[name]}?"
    same = [k.partition(".")[2] for k in keys if k.startswith(f"{section}.")]
    near = [f"{section}.{n}" for n in difflib.get_close_matches(name, same, 1, 0.6)]
    near = near or [by_name[n] for n in difflib.get_close_matches(name, list(by_name), 1, 0.7)]
    near = near or difflib.get_close_matches(key, keys, 1, 0.8)
    return f"; did you mean {near[0]}?" if near else ""


def apply_overrides(config: RunConfig, overrides: dict[str, Any], source: str) -> RunConfig:
    """Return ``config`` with ``{'section.key': value}`` applied; unknown keys are errors."""
    sections = {name: dataclasses.asdict(getattr(config, name)) for name in SECTIONS}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])} \
            if section in SECTIONS else {}
        if name not in fields:
            raise ConfigError(f"{source}: unknown config key {key!r}{did_you_mean(key)}")
        f = fields[name]
        sections[section][name] = _parse(key, value, f.default, f.metadata, source)
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

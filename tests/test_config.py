"""Configuration: presets, TOML files and --set overrides, and clear errors."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from mxlstm.config import (
    KVSTORES,
    SECTIONS,
    all_keys,
    apply_overrides,
    config_from_dict,
    parse_set_options,
)
from mxlstm.config_toml import describe, read_toml
from mxlstm.errors import ConfigError
from mxlstm.tasks import TASKS, config_file_text, default_config, ignored_keys, user_config
from mxlstm.tasks.base import check_model_size, model_tensors


def test_every_task_has_a_valid_preset_and_every_key_has_help():
    for task in TASKS:
        cfg = default_config(task)
        assert cfg.task == task
        text = describe(cfg)
        assert "[model]" in text and "hidden_size" in text and "#" in text


def test_precedence_preset_then_file_then_command_line(tmp_path):
    cfg = default_config("digits")
    assert cfg.model.bidirectional is True  # from the digits preset
    path = tmp_path / "run.toml"
    path.write_text('[model]\nhidden_size = 32\ncell = "gru"\n[train]\nlr = 0.01\n')
    cfg = apply_overrides(cfg, read_toml(path), str(path))
    cfg = apply_overrides(cfg, parse_set_options(["model.hidden_size=16"]), "command line")
    assert (cfg.model.hidden_size, cfg.model.cell, cfg.train.lr) == (16, "gru", 0.01)


def test_saved_config_round_trips():
    cfg = apply_overrides(default_config("text"), {"train.seed": "7"}, "test")
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key,value,message", [
    ("model.hiden_size", "3", "unknown config key 'model.hiden_size'"),
    ("modle.hidden_size", "3", "unknown config key"),
    ("model.hidden_size", "big", "expected int, got 'big'"),
    ("train.lr", "fast", "expected float"),
    ("model.bidirectional", "maybe", "expected bool"),
    ("model.cell", "transformer", "not one of lstm, gru, rnn"),
    ("model.hidden_size", "2.5", "expected int"),
])
def test_bad_keys_and_values_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(default_config("digits"), {key: value}, "command line")


def test_bad_set_syntax_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set_options(["model.hidden_size"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nhidden_size = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_toml(tmp_path / "missing.toml")
    flat = tmp_path / "flat.toml"
    flat.write_text("hidden_size = 3\n")
    with pytest.raises(ConfigError, match="must be a \\[section\\] table"):
        read_toml(flat)


# --------------------------------------------------------------------------- config files
def _printed(capsys, *argv: str) -> str:
    from mxlstm.cli import main

    capsys.readouterr()
    assert main(["config", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("task", list(TASKS))
def test_printed_config_round_trips_through_config_for_every_task(task, tmp_path, capsys):
    text = _printed(capsys, "--task", task)
    assert tomllib.loads(text)["task"] == task  # real TOML
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert user_config(task, path) == default_config(task)
    assert _printed(capsys, "--task", task, "--config", str(path)) == text


# A changed value per task, among the keys it uses (strings with quotes, backslashes and
# non-ASCII text survive the round trip too).
CHANGES = {"train.lr": "0.25", "train.seed": "7", "model.hidden_size": "17",
           "train.monitor": 'we"ird \\ na\tme é', "model.cell": "gru"}


@pytest.mark.parametrize("task", list(TASKS))
def test_changed_config_round_trips_and_is_marked(task, tmp_path, capsys):
    flags = [f"--set={k}={v}" for k, v in CHANGES.items()]
    text = _printed(capsys, "--task", task, *flags)
    changed = user_config(task, flags=parse_set_options([f[6:] for f in flags]))
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert user_config(task, path) == changed != default_config(task)
    lines = text.splitlines()
    assert "lr = 0.25  # changed (preset " in text or "lr = 0.25  # changed (default " in text
    assert 'cell = "gru"  # changed (default "lstm")' in lines
    assert changed.train.monitor == 'we"ird \\ na\tme é'


def test_printed_config_marks_preset_values_and_keeps_the_help():
    text = config_file_text(default_config("digits"))
    lines = text.splitlines()
    assert 'task = "digits"' in lines
    assert "bidirectional = true  # preset (default false)" in lines
    assert "epochs = 60  # preset (default 20)" in lines
    assert "num_layers = 1" in lines  # a default: unmarked
    assert lines[lines.index("num_layers = 1") - 1] == "# stacked recurrent layers"
    assert "# memory cell (lstm|gru|rnn)" in lines


@pytest.mark.parametrize("task,shown,hidden", [
    ("digits", {"data.path", "data.augment", "model.pooling"},
     {"data.text_field", "data.name", "data.seq_length", "data.bptt", "model.embed_size"}),
    ("uea", {"data.name", "data.normalize"}, {"data.max_vocab", "model.tie_weights"}),
    ("text", {"data.text_field", "data.max_vocab", "model.embed_size"},
     {"data.seq_length", "data.bptt", "data.normalize", "model.tie_weights"}),
    ("lm", {"data.bptt", "model.tie_weights", "model.output_dropout"},
     {"data.text_field", "data.augment", "model.pooling", "model.bidirectional"}),
    ("adding", {"data.seq_length", "data.num_train"},
     {"data.path", "data.copy_length", "model.embed_size", "data.text_field"}),
    ("copy", {"data.copy_length", "model.embed_size"}, {"data.path", "model.pooling"}),
])
def test_printed_config_lists_only_the_keys_the_task_uses(task, shown, hidden):
    tree = tomllib.loads(config_file_text(default_config(task)))
    keys = {f"{s}.{k}" for s in SECTIONS for k in tree[s]}
    assert shown <= keys and not hidden & keys
    assert keys == set(all_keys()) - ignored_keys(task)


@pytest.mark.parametrize("task", list(TASKS))
def test_presets_set_only_keys_the_task_uses(task):
    module = TASKS[task][0]
    assert not set(module.PRESETS[task]) & ignored_keys(task)
    assert ignored_keys(task) <= set(all_keys())


def test_top_level_task_must_match(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "text"\n[train]\nepochs = 2\n')
    assert user_config("text", path).train.epochs == 2
    with pytest.raises(ConfigError, match=f"{path}: the file is for task 'text' but --task "
                                          f"is 'digits'"):
        user_config("digits", path)


# --------------------------------------------------------------------------- key checks
@pytest.mark.parametrize("key,suggestion", [
    ("epochs", "train.epochs"), ("model.hiden_size", "model.hidden_size"),
    ("hidden_size", "model.hidden_size"), ("train.hidden_size", "model.hidden_size"),
    ("data.text_feld", "data.text_field"), ("train.zzz", None),
])
def test_unknown_keys_suggest_the_nearest(key, suggestion):
    with pytest.raises(ConfigError) as err:
        user_config("digits", flags={key: "3"})
    message = str(err.value)
    assert message.startswith(f"command line: unknown config key {key!r}")
    if suggestion:
        assert message.endswith(f"; did you mean {suggestion}?")
    else:
        assert "did you mean" not in message


def test_ignored_keys_are_errors_from_the_user_but_saved_configs_still_load(tmp_path):
    with pytest.raises(ConfigError, match="command line: config key data.text_field is not "
                                          "used by task digits"):
        user_config("digits", flags={"data.text_field": "review"})
    path = tmp_path / "run.toml"
    path.write_text("[data]\nseq_length = 50\n")
    with pytest.raises(ConfigError, match=f"{path}: config key data.seq_length is not used "
                                          f"by task lm"):
        user_config("lm", path)
    for task in TASKS:  # every key is in a saved config.json (resume, evaluate)
        cfg = default_config(task)
        assert config_from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- values
FLOAT_KEYS = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)
              if isinstance(f.default, float)]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("inf"), float("nan")])
def test_non_finite_floats_are_refused_for_every_float_key(key, value):
    with pytest.raises(ConfigError, match=f"config key {key}: must be a finite number"):
        apply_overrides(default_config("text"), {key: value}, "command line")


def test_kvstore_must_be_a_name_mxnet_accepts():
    for name in KVSTORES:
        assert apply_overrides(default_config("digits"), {"train.kvstore": name},
                               "t").train.kvstore == name
    for name in ("bogus", "dist_async", "nccl", "horovod"):
        with pytest.raises(ConfigError, match=f"config key train.kvstore: '{name}' is not "
                                              f"one of device, local, dist_sync"):
            apply_overrides(default_config("digits"), {"train.kvstore": name}, "t")


def test_every_accepted_kvstore_name_creates_a_store_in_mxnet():
    import mxnet as mx

    for name in ("device", "local"):  # the dist_* ones need a scheduler: test_launch.py
        assert mx.kv.create(name).type == name


@pytest.mark.parametrize("value,ok", [("-5", False), ("1", False), ("2", False), ("0", True),
                                      ("3", True), ("100", True)])
def test_chrono_init_is_checked_at_the_key(value, ok):
    if ok:
        assert apply_overrides(default_config("digits"), {"model.chrono_init": value},
                               "t").model.chrono_init == int(value)
    else:
        with pytest.raises(ConfigError, match="config key model.chrono_init: must be"):
            apply_overrides(default_config("digits"), {"model.chrono_init": value}, "t")


@pytest.mark.parametrize("key,value", [
    ("model.hidden_size", "65537"), ("model.embed_size", "100000"),
    ("model.num_layers", "65"), ("train.batch_size", str(2**21)),
    ("train.eval_batch_size", str(2**21)), ("data.max_vocab", str(10**8)),
    ("model.head_units", "128,70000"),
])
def test_caps_refuse_values_mxnet_cannot_allocate(key, value):
    with pytest.raises(ConfigError, match=f"config key {key}: .*at most"):
        apply_overrides(default_config("text"), {key: value}, "t")


def test_model_size_is_checked_before_allocation():
    with pytest.raises(ConfigError, match="config key model.hidden_size: "
                                          "model.hidden_size=30000 needs a weight matrix"):
        user_config("digits", flags={"model.hidden_size": "30000"})
    with pytest.raises(ConfigError, match="config key model.embed_size: model.embed_size=60000"
                                          " needs a weight matrix of 2,400,000,000"):
        big = apply_overrides(default_config("text"), {"model.embed_size": "60000"}, "t")
        check_model_size(big, model_tensors(big, 1, vocab_size=40000, num_outputs=2))
    cfg = apply_overrides(default_config("lm"), {"model.hidden_size": "4096"}, "t")
    tensors = model_tensors(cfg, cfg.model.embed_size, 10000, language_model=True)
    check_model_size(cfg, tensors, memory=64 << 30)  # ~1.2 GiB of training state: fits
    with pytest.raises(ConfigError, match="config key model.hidden_size: model.hidden_size="
                                          "4096 makes a model of .* GiB to train, but this "
                                          "machine has 1 GiB"):
        check_model_size(cfg, tensors, memory=1 << 30)
    assert user_config("lm") == default_config("lm")  # the presets pass

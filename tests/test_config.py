"""Configuration: presets, TOML files and --set overrides, and clear errors."""

from __future__ import annotations

import pytest

from mxlstm.errors import ConfigError
from mxlstm.tasks import TASKS, default_config
from mxlstm.training.config import (
    apply_overrides,
    config_from_dict,
    describe,
    parse_set_options,
    read_toml,
)


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

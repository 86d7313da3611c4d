"""The run configuration as TOML: read a ``--config`` file into dotted keys, and print a
configuration as a commented file that reads back unchanged (``mxlstm config``)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

from mxlstm.config import SECTIONS, RunConfig, did_you_mean
from mxlstm.errors import ConfigError


def read_toml(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Flatten a TOML file with ``[data]``, ``[model]``, ``[train]`` tables into dotted keys.

    A top-level ``task = "..."`` (as ``mxlstm config`` prints it) must equal ``task``."""
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
            if not isinstance(table, str):
                raise ConfigError(f"{path}: top-level key 'task' must be a string, "
                                  f"got {table!r}")
            if task is not None and table != task:
                raise ConfigError(f"{path}: the file is for task {table!r} but --task is "
                                  f"{task!r}")
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: top-level key {section!r} must be a [section] table"
                              f"{did_you_mean(section) if section not in SECTIONS else ''}")
        if section not in SECTIONS:
            near = difflib.get_close_matches(section, list(SECTIONS), n=1, cutoff=0.5)
            hint = f"did you mean [{near[0]}]?" if near else \
                f"sections are {', '.join(f'[{s}]' for s in SECTIONS)}"
            raise ConfigError(f"{path}: unknown section [{section}]; {hint}")
        for name, value in table.items():
            flat[f"{section}.{name}"] = value
    return flat


def toml_value(value: Any) -> str:
    """``value`` (bool, int, finite float or str) as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = json.dumps(str(value), ensure_ascii=False)  # JSON escapes are valid TOML ones
    return text.replace("\x7f", "\\u007f")


def describe(config: RunConfig, preset: RunConfig | None = None,
             hidden: frozenset[str] | set[str] = frozenset()) -> str:
    """``config`` as a TOML file that ``--config`` reads back unchanged (``mxlstm config``).

    Each key comes with its help text as a comment; values that differ from the defaults
    are marked ``# preset`` (the task's preset, ``preset``) or ``# changed``. Keys in
    ``hidden`` (those the task does not use) are left out."""
    preset = preset or RunConfig(task=config.task)
    lines = [f"# mxlstm configuration for task {config.task}: "
             f"mxlstm train --task {config.task} --config FILE",
             "# '# preset': the task's preset value, '# changed': your value (files, --set);",
             "# unmarked keys have their defaults. Keys the task does not use are left out.",
             f"task = {toml_value(config.task)}"]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        values, preset_values = getattr(config, section), getattr(preset, section)
        for f in dataclasses.fields(cls):
            if f"{section}.{f.name}" in hidden:
                continue
            value, before = getattr(values, f.name), getattr(preset_values, f.name)
            choices = f.metadata.get("choices")
            extra = f" ({'|'.join(choices)})" if choices else ""
            lines.append(f"# {f.metadata['help']}{extra}")
            mark = ""
            if value != before:
                mark = f"  # changed (preset {toml_value(before)})" if before != f.default \
                    else f"  # changed (default {toml_value(f.default)})"
            elif value != f.default:
                mark = f"  # preset (default {toml_value(f.default)})"
            lines.append(f"{f.name} = {toml_value(value)}{mark}")
    return "\n".join(lines) + "\n"

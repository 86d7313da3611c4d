"""Keyword arguments of the Python estimators -> ``section.key`` configuration overrides.

``SequenceClassifier(preset="uea", epochs=20, hidden_size=64)`` means
``--set train.epochs=20 --set model.hidden_size=64``: a short name stands for the one key of
that name in any section; ``model__dropout`` (scikit-learn's nesting) and
``config={"model.dropout": 0.2}`` name the section outright.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mxlstm.config import SECTIONS
from mxlstm.errors import ConfigError


def _sections_of() -> dict[str, list[str]]:
    """Short key name -> the sections that have it."""
    names: dict[str, list[str]] = {}
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            names.setdefault(field.name, []).append(section)
    return names


def config_overrides(keywords: dict[str, Any], config: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """``{"section.key": value}`` of the estimator's keyword arguments and ``config``.

    Raises :class:`ConfigError` for a name no section has, or one several sections have.
    Values are checked later, with the task's preset, like ``--set`` values.
    """
    sections = _sections_of()
    overrides: dict[str, Any] = {}
    for name, value in keywords.items():
        if "__" in name:
            section, _, key = name.partition("__")
            full = f"{section}.{key}"
        else:
            found = sections.get(name)
            if not found:
                raise ConfigError(f"unknown setting {name!r}: not a key of any section "
                                  f"({', '.join(SECTIONS)}); see docs/cli.md")
            if len(found) > 1:
                choices = " or ".join(f"{s}__{name}" for s in found)
                raise ConfigError(f"setting {name!r} is in several sections: write {choices}")
            full = f"{found[0]}.{name}"
        overrides[full] = value
    for key, value in (config or {}).items():
        if not isinstance(key, str) or "." not in key:
            raise ConfigError(f"config key {key!r}: expected 'section.key', e.g. "
                              f"'model.hidden_size'")
        overrides[key] = value
    return overrides

"""The Python examples in the README and the quickstart run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/quickstart.md"]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page):
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python example"
    for block in blocks:
        exec(compile(block, page, "exec"), {})


def test_python_api_page_runs_as_doctests(tmp_path, monkeypatch):
    import doctest

    monkeypatch.chdir(tmp_path)  # the examples write runs/ and export/ here
    result = doctest.testfile(str(ROOT / "docs/python.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 30
    assert result.failed == 0, f"{result.failed} docs/python.md example(s) failed"


def test_cli_reference_lists_every_config_key_and_preset():
    import dataclasses

    from mxlstm.config import SECTIONS
    from mxlstm.tasks import TASKS

    page = (ROOT / "docs/cli.md").read_text()
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert f"`{section}.{field.name}`" in page, f"{section}.{field.name} undocumented"
    for task, (module, _) in TASKS.items():
        for key, value in module.PRESETS[task].items():
            assert f"`{key}={value}`" in page, f"preset {task}: {key}={value} undocumented"

"""Exports written by an older mxlstm still load and answer the same
(``tests/data_files/exports-v1``, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mxlstm.deploy import predictor as standalone

FILES = Path(__file__).resolve().parents[1] / "data_files" / "exports-v1"
EXPECTED = json.loads((FILES / "expected.json").read_text())


def _numbers(answer, path=""):
    """Flatten an answer into ``{path: number}`` and ``{path: other value}``."""
    if isinstance(answer, dict):
        items = answer.items()
    elif isinstance(answer, list):
        items = enumerate(answer)
    else:
        return ({path: float(answer)}, {}) if isinstance(answer, float) else ({}, {path: answer})
    nums, rest = {}, {}
    for key, value in items:
        n, r = _numbers(value, f"{path}/{key}")
        nums.update(n)
        rest.update(r)
    return nums, rest


@pytest.mark.parametrize("name", sorted(EXPECTED["answers"]))
def test_old_export_loads_and_answers_the_same(name):
    p = standalone.Predictor(FILES / name)  # checks the params fingerprint and the schema
    top_k = 3 if name == "lm" else None
    got = p.predict(EXPECTED["items"][name], top_k=top_k)
    want_nums, want_rest = _numbers(EXPECTED["answers"][name])
    got_nums, got_rest = _numbers(got)
    assert got_rest == want_rest
    assert got_nums.keys() == want_nums.keys()
    assert max(abs(got_nums[k] - want_nums[k]) for k in want_nums) <= 1e-6


def test_old_streaming_export_still_streams():
    p = standalone.Predictor(FILES / "digits-stream")
    rows = np.array(EXPECTED["items"]["digits-stream"][0], dtype=np.float32)
    answer, states = p.stream(rows[:3])
    answer, states = p.stream(rows[3:], states)
    whole = EXPECTED["answers"]["digits-stream"][0]
    assert answer["label"] == whole["label"]
    assert np.allclose([answer["probabilities"][k] for k in sorted(whole["probabilities"])],
                       [whole["probabilities"][k] for k in sorted(whole["probabilities"])],
                       atol=1e-6)

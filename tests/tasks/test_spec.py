"""The typed task spec: every task's meta reads as a TaskSpec; kinds drive export and
prediction without string switches."""

from __future__ import annotations

import pytest

from mxlstm.errors import ModelFileError
from mxlstm.kinds import KINDS
from mxlstm.tasks.spec import BASELINES, DEFAULT_BASELINE, TaskSpec

META = {"task": "vowels", "kind": "sequence_classification", "label_names": ["a", "b"],
        "input": {"type": "float", "layout": "NTC", "channels": 12, "dtype": "float32",
                  "lengths": True, "max_length": 29, "unknown_future_key": 1},
        "normalization": {"mean": [0.0], "std": [1.0], "count": 3}}


def test_from_meta_is_typed():
    spec = TaskSpec.from_meta(META)
    assert spec.kind is KINDS["sequence_classification"]
    assert spec.input.channels == 12 and spec.input.lengths and not spec.input.tokens
    assert spec.label_names == ("a", "b") and spec.baseline == "majority"
    assert not spec.stateful and spec.idx_to_token is None


def test_unknown_kind_is_refused():
    with pytest.raises(ModelFileError, match="unknown task kind 'ranking'"):
        TaskSpec.from_meta({**META, "kind": "ranking"})


def test_every_kind_has_a_baseline_and_a_consistent_answer():
    assert set(DEFAULT_BASELINE) == set(KINDS)
    assert set(DEFAULT_BASELINE.values()) <= set(BASELINES)
    for kind in KINDS.values():
        assert kind.answer in ("labels", "step_labels", "values", "tokens")
        assert kind.stateful == (kind.answer == "tokens")
    assert KINDS["regression"].head == "value" and KINDS["tagging"].ranked is None


def test_outputs_of_an_export():
    lm = TaskSpec.from_meta({"task": "lm", "kind": "language_model", "label_names": [],
                             "input": {"type": "tokens", "layout": "NT", "dtype": "int32"}})
    states = [{"name": "state_h", "shape": [2, "N", 8]}]
    out = lm.outputs(states, streaming=False, per_step=False)
    assert [o["name"] for o in out] == ["logits", "state_h_out"]
    assert out[0]["shape"] == ["N", "T", "V"]
    reg = TaskSpec.from_meta({**META, "kind": "regression"})
    assert reg.outputs([], streaming=False, per_step=False)[0]["name"] == "value"
    assert reg.outputs([], streaming=True, per_step=False)[0]["shape"] == ["N", "T", "K"]


@pytest.mark.parametrize("task", ["digits", "text", "lm", "adding", "copy"])
def test_every_task_declares_a_known_kind(task):
    """The kind each task module writes is one the export format knows."""
    import inspect

    from mxlstm.tasks import task_module
    source = inspect.getsource(task_module(task))
    assert any(f'"{name}"' in source for name in KINDS), task

"""ONNX: conversion verified in onnxruntime, meta records, refusals, agreement with the predictor.

Skipped without onnx / onnxruntime (``make onnx`` installs them). Tiny runs come from
``test_predictor.py``'s helpers (trained once per session, shared with the other files).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_predictor import exported, softmax, tiny_run

from mxlstm.blocks.models import LanguageModel, SequenceModel
from mxlstm.cli import main
from mxlstm.data.sources import load_digits
from mxlstm.deploy.onnx_export import ONNX_OPSET, export_onnx, onnx_refusal
from mxlstm.deploy.predictor import Predictor
from mxlstm.deploy.ship import STANDALONE_FILES
from mxlstm.errors import ModelFileError

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """The run cache shared with test_predictor.py (same session directory)."""
    path = tmp_path_factory.getbasetemp() / "deploy-runs"
    path.mkdir(exist_ok=True)  # tiny_run('lm') writes its corpus there first
    return path


def read_meta(prefix: Path) -> dict:
    return json.loads(Path(str(prefix) + "-meta.json").read_text())


def session(prefix: Path):
    return ort.InferenceSession(str(prefix) + ".onnx", providers=["CPUExecutionProvider"])


def run(sess, **inputs) -> dict:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


def test_language_model_exports_with_states_and_matches_the_predictor(base):
    prefix = exported(base, "lm")
    result = export_onnx(prefix, model_dir=tiny_run(base, "lm"))
    onnx_meta = read_meta(prefix)["onnx"]
    assert Path(result["path"]) == Path(str(prefix) + ".onnx")
    assert onnx_meta["exported"] and onnx_meta["opset"] == ONNX_OPSET == 13
    assert onnx_meta["recurrent_ops"] == "2 x 1-layer lstm"  # a stack, not one 2-layer op
    check = onnx_meta["verification"]
    assert check["max_abs_diff"] <= 1e-5 and check["batch_sizes"] == [2, 5]
    assert onnx_meta["dynamic_axes"] == ["N", "T"]
    sess = session(prefix)
    assert [i.name for i in sess.get_inputs()] == ["data", "state_h", "state_c"]
    assert {o.name for o in sess.get_outputs()} == {"logits", "state_h_out", "state_c_out"}

    p = Predictor(prefix)
    text = "she had been forced into prudence in her youth"
    answer = p.predict_one(text, top_k=5)
    ids = p.preprocess(text)[None]
    h, c = p.begin_states(1)
    out = run(sess, data=ids, state_h=h, state_c=c)
    probs = softmax(out["logits"][0, -1].astype(np.float64))
    tops = {t["token"]: t["probability"] for t in answer["top_k"]}
    vocab = p.meta["preprocessing"]["idx_to_token"]
    assert vocab[int(probs.argmax())] == answer["next_token"]
    assert max(abs(probs[vocab.index(tok)] - prob) for tok, prob in tops.items()) <= 1e-6
    # states carry over: two chunks through onnxruntime equal one pass
    first = run(sess, data=ids[:, :4], state_h=h, state_c=c)
    second = run(sess, data=ids[:, 4:], state_h=first["state_h_out"],
                 state_c=first["state_c_out"])
    assert np.abs(second["logits"] - out["logits"][:, 4:]).max() <= 1e-5


@pytest.mark.parametrize("name", ["digits", "digits-uni"])
def test_fixed_length_classifier_exports_without_valid_length(base, name):
    prefix = exported(base, name)  # the MXNet export takes valid_length; ONNX does not
    result = export_onnx(prefix, model_dir=tiny_run(base, name))
    onnx_meta = read_meta(prefix)["onnx"]
    assert result["max_abs_diff"] <= 1e-5
    assert onnx_meta["sequence_length"] == 8 and onnx_meta["dynamic_axes"] == ["N"]
    assert [i["name"] for i in onnx_meta["inputs"]] == ["data"]
    assert onnx_meta["inputs"][0]["shape"] == ["N", 8, 8]
    assert onnx_meta["recurrent_ops"].endswith("bidirectional") == (name == "digits")
    sess = session(prefix)
    assert [i.name for i in sess.get_inputs()] == ["data"]

    p = Predictor(prefix)
    raw = load_digits().sequences[:7]
    answers = p.predict(raw)
    x = np.stack([p.preprocess(seq) for seq in raw])
    for rows in (slice(0, 1), slice(0, 7)):  # batch sizes 1 and 7
        probs = softmax(run(sess, data=x[rows])["logits"].astype(np.float64))
        expected = np.array([[a["probabilities"][k] for k in p.labels] for a in answers[rows]])
        assert np.abs(probs - expected).max() <= 1e-6


def test_variable_length_model_is_refused_and_the_reason_recorded(base):
    prefix = exported(base, "vowels")
    with pytest.raises(ModelFileError, match="ONNX export refused: sequences have different "
                                             "lengths .*valid_length"):
        export_onnx(prefix, model_dir=tiny_run(base, "vowels"))
    onnx_meta = read_meta(prefix)["onnx"]
    assert onnx_meta["exported"] is False and "valid_length" in onnx_meta["refused"]
    assert not Path(str(prefix) + ".onnx").exists()


def test_refusal_reasons():
    fixed, varying = (8, 8, 8), (None, 7, 29)
    assert onnx_refusal(SequenceModel(3, 8, num_layers=2, bidirectional=True), False,
                        fixed) is None
    assert "different lengths (7 to 29" in onnx_refusal(SequenceModel(3, 8), False,
                                                         varying)
    assert onnx_refusal(SequenceModel(3, 8), True, varying) is None  # streaming
    assert onnx_refusal(LanguageModel(50, 8, 8), True, None) is None  # always stateful
    for options in ({"peephole": True}, {"projection_size": 4}, {"zoneout": 0.1}):
        reason = onnx_refusal(SequenceModel(3, 8, **options), False, fixed)
        assert "contrib.foreach" in reason, options


def test_cli_export_onnx_writes_the_file_and_reports(base, tmp_path, capsys):
    prefix = tmp_path / "cli" / "digits-uni"
    argv = ["export", "--model", str(tiny_run(base, "digits-uni")), "--out", str(prefix),
            "--onnx"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["onnx"]["max_abs_diff"] <= 1e-5 and summary["onnx"]["opset"] == 13
    assert sorted(f.name for f in prefix.parent.iterdir()) == sorted([
        "digits-uni-0000.params", "digits-uni-meta.json", "digits-uni-symbol.json",
        "digits-uni.onnx", *STANDALONE_FILES])  # and the standalone predictor beside them
    assert read_meta(prefix)["onnx"]["file"] == "digits-uni.onnx"

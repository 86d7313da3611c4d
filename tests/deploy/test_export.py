"""Export: the three files, the self-check, streaming graphs, ONNX refusals, the CLI.

Tiny runs come from ``test_predictor.py``'s helpers (trained once per session).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from test_predictor import exported, live_classifier, probs, tiny_run

from mxlstm import runs
from mxlstm.blocks.models import SequenceModel
from mxlstm.blocks.recurrent import RecurrentLayer
from mxlstm.cli import main
from mxlstm.data.sources import NormalizationStats, load_digits
from mxlstm.deploy import export as export_module
from mxlstm.deploy.export import export_model
from mxlstm.deploy.graphs import fixed_length_graph
from mxlstm.deploy.onnx_export import export_onnx
from mxlstm.deploy.predictor import InputError, Predictor
from mxlstm.errors import ModelFileError, MxlstmError

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_ONNX = HAS_ORT and importlib.util.find_spec("onnx") is not None  # both: `make onnx`


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """The run cache shared with test_predictor.py (same session directory)."""
    return tmp_path_factory.getbasetemp() / "deploy-runs"


def read_meta(prefix: Path) -> dict:
    return json.loads(Path(str(prefix) + "-meta.json").read_text())


def test_export_writes_three_self_describing_files(base):
    prefix = exported(base, "digits")
    meta = read_meta(prefix)
    params = Path(str(prefix) + "-0000.params")
    assert meta["format"] == "mxlstm-export" and meta["format_version"] == 1
    assert meta["fingerprint"]["params_sha256"] == hashlib.sha256(params.read_bytes()).hexdigest()
    assert meta["task"] == "digits" and meta["kind"] == "sequence_classification"
    assert meta["label_names"] == [str(k) for k in range(10)]
    spec = meta["input"]
    assert spec["names"] == ["data", "valid_length"] and spec["lengths"] is True
    assert (spec["layout"], spec["dtype"], spec["features"]) == ("NTC", "float32", 8)
    assert len(meta["preprocessing"]["normalization"]["mean"]) == 8
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("logits", ["N", "K"])]
    assert meta["versions"]["mxnet"] == mx.__version__
    assert meta["graph"]["packed_rnn_weights"] == 2  # one fused op per direction
    check = meta["verification"]
    assert check["max_abs_diff"] <= 1e-5
    assert check["batches"][0][:2] != check["batches"][1][:2]  # other batch size and length
    graph = json.loads(Path(str(prefix) + "-symbol.json").read_text())
    inputs = [n["name"] for n in graph["nodes"] if n["op"] == "null" and "_" not in n["name"]]
    assert inputs == ["data"] and any(n["name"] == "valid_length" for n in graph["nodes"])
    text = read_meta(exported(base, "text"))
    pre = text["preprocessing"]
    assert pre["tokenizer"] == {"rule": "mxlstm-word-v1", "level": "word"}
    assert pre["idx_to_token"][:3] == ["<unk>", "<pad>", "<eos>"]
    assert (pre["unk_id"], pre["pad_id"], pre["truncate"]) == (0, 1, 64)


def test_export_that_does_not_round_trip_is_refused(base, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "max_abs_diff", lambda a, b: 1.0)
    with pytest.raises(ModelFileError, match="did not round-trip"):
        export_model(tiny_run(base, "digits"), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_language_model_exports_states_as_inputs_and_outputs(base):
    meta = read_meta(exported(base, "lm"))
    assert meta["input"]["names"] == ["data", "state_h", "state_c"]
    assert [s["shape"] for s in meta["input"]["states"]] == [[2, "N", 16], [2, "N", 16]]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "state_h_out", "state_c_out"]
    assert meta["preprocessing"]["tokenizer"]["rule"] == "mxlstm-word-v1"


def test_streaming_chunks_equal_one_full_pass(base):
    prefix = exported(base, "digits-uni", streaming=True)
    meta = read_meta(prefix)
    assert meta["streaming"] and meta["input"]["names"] == ["data", "state_h", "state_c"]
    assert meta["verification"]["streaming_vs_full_pass_max_abs_diff"] <= 1e-5
    prepared, _, run_meta = runs.load_model(tiny_run(base, "digits-uni"))
    model, labels = prepared.model, run_meta["label_names"]
    stats = NormalizationStats.from_dict(run_meta["normalization"])
    p = Predictor(prefix)
    raw = load_digits().sequences[:3]
    for seq in raw:
        answer, states = p.stream(seq[:3])  # batch 1, states carried between chunks
        answer, states = p.stream(seq[3:5], states)
        answer, states = p.stream(seq[5:], states)
        full = live_classifier(model, [stats.apply(seq)])
        assert np.abs(probs([answer], labels) - full).max() <= 1e-6
        x = stats.apply(seq)[None]
        steps = p.forward(x, *p.begin_states(1))[0]  # (1, T, K): the head at every step
        for t in range(1, len(seq) + 1):
            prefix_logits = model(mx.nd.array(x[:, :t]), mx.nd.array([t])).asnumpy()
            assert np.abs(steps[0, t - 1] - prefix_logits[0]).max() <= 1e-5
    rows = [raw[0][:5], raw[1], raw[2][:2]]  # whole sequences, mixed lengths, one batch
    batch = live_classifier(model, [stats.apply(r) for r in rows])
    assert np.abs(probs(p.predict(rows), labels) - batch).max() <= 1e-6


def test_streaming_is_refused_where_it_cannot_be_exact(base):
    with pytest.raises(ModelFileError, match="bidirectional"):
        export_model(tiny_run(base, "digits"), base / "never", streaming=True)
    with pytest.raises(ModelFileError, match="the series model reads the whole series at "
                                             "once: a convolutional branch"):
        export_model(tiny_run(base, "vowels-fcn"), base / "never", streaming=True)
    mean_pooled = SequenceModel(3, 8, pooling="mean")
    assert "pooling='mean'" in mean_pooled.streaming_refusal()
    assert SequenceModel(3, 8).streaming_refusal() is None


# ----------------------------------------------------------------------------- fixed length
def _fixed_graph(model: SequenceModel, split: bool) -> SequenceModel:
    return fixed_length_graph(model, 6, split_directions=split)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_fixed_length_graph_equals_the_model_read_to_the_end(cell, pooling):
    mx.random.seed(3)
    model = SequenceModel(4, 8, cell_type=cell, num_layers=2, bidirectional=True,
                          pooling=pooling, head_units=(5,))
    model.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.normal(shape=(3, 6, 7))
    reference = model(x, mx.nd.full((3,), 6)).asnumpy()
    for split in (False, True):
        graph = _fixed_graph(model, split)
        graph.hybridize(static_alloc=True)
        assert np.abs(graph(x).asnumpy() - reference).max() <= 1e-6, split
    gates = SequenceModel(4, 8, cell_type=cell, bidirectional=True, pooling=pooling,
                          fused=False)
    gates.initialize(mx.init.Uniform(0.5))
    graph = fixed_length_graph(gates, 6)  # cells path
    assert np.abs(graph(x).asnumpy() - gates(x, mx.nd.full((3,), 6)).asnumpy()).max() <= 1e-6


def test_split_directions_keep_the_final_states():
    mx.random.seed(4)
    layer = RecurrentLayer("lstm", 8, num_layers=2, bidirectional=True)
    layer.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.normal(shape=(2, 5, 3))
    states = [mx.nd.random.normal(shape=(4, 2, 8)) for _ in range(2)]
    outs = [layer.variant(return_states=True, one_op_per_layer=True,
                          split_directions=split)(x, None, states) for split in (False, True)]
    for a, b in zip([outs[0][0], *outs[0][1]], [outs[1][0], *outs[1][1]]):
        assert a.shape == b.shape and np.abs(a.asnumpy() - b.asnumpy()).max() <= 1e-6


def test_fixed_length_export_takes_data_only_and_matches_the_trained_model(base, tmp_path):
    prefix = tmp_path / "fixed"
    meta = export_model(tiny_run(base, "digits"), prefix, fixed_length=True)
    assert meta["input"]["names"] == ["data"] and meta["input"]["fixed_length"] == 8
    assert meta["input"]["lengths"] is False
    assert meta["verification"]["fixed_length_vs_trained_max_abs_diff"] <= 1e-5
    graph = json.loads(Path(str(prefix) + "-symbol.json").read_text())
    ops = [n["op"] for n in graph["nodes"]]
    assert "SequenceReverse" not in ops and "gather_nd" not in ops
    rnn = [n for n in graph["nodes"] if n["op"] == "RNN"]
    assert len(rnn) == 2 and all(n["attrs"]["bidirectional"] == "False" for n in rnn)
    prepared, _, run_meta = runs.load_model(tiny_run(base, "digits"))
    stats = NormalizationStats.from_dict(run_meta["normalization"])
    raw = load_digits().sequences[:5]
    p = Predictor(prefix)
    expected = live_classifier(prepared.model, [stats.apply(r) for r in raw])
    assert np.abs(probs(p.predict(raw), run_meta["label_names"]) - expected).max() <= 1e-6
    with pytest.raises(InputError, match="exactly 8 steps per input .*got 5"):
        p.predict([raw[0], raw[1][:5]])


def test_fixed_length_export_is_refused_where_lengths_vary(base, tmp_path):
    with pytest.raises(ModelFileError, match=r"--fixed-length: .*different lengths \(\d+ to "):
        export_model(tiny_run(base, "vowels"), tmp_path / "v", fixed_length=True)
    with pytest.raises(ModelFileError, match="--fixed-length: language models"):
        export_model(tiny_run(base, "lm"), tmp_path / "lm", fixed_length=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- ONNX
# (conversion, verification and refusals: test_onnx.py)
@pytest.mark.skipif(HAS_ORT, reason="onnxruntime is installed")
def test_onnx_without_runtime_says_how_to_install(base):
    with pytest.raises(MxlstmError, match=r"pip install onnx==1\.14\.1"):
        export_onnx(exported(base, "digits-uni", streaming=True),
                    model_dir=tiny_run(base, "digits-uni"))


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (make onnx)")
def test_onnx_streaming_graph_matches_in_onnxruntime(base):
    result = export_onnx(exported(base, "digits-uni", streaming=True),
                         model_dir=tiny_run(base, "digits-uni"))
    assert result["opset"] == 17 and result["max_abs_diff"] <= 1e-5
    assert result["verification"]["states_max_abs_diff"] <= 1e-5
    assert Path(result["path"]).is_file()


# ----------------------------------------------------------------------------- CLI
def test_cli_export_and_predict(base, tmp_path, capsys):
    prefix = tmp_path / "cli" / "digits"
    assert main(["export", "--model", str(tiny_run(base, "digits")), "--out", str(prefix)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == ["data", "valid_length"] and summary["max_abs_diff"] <= 1e-5
    raw = np.stack(load_digits().sequences[:3])
    np.save(tmp_path / "x.npy", raw)
    assert main(["predict", "--model", str(prefix), "--input", str(tmp_path / "x.npy")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Predictor(prefix).predict(list(raw))
    assert [line["line"] for line in lines] == [1, 2, 3]
    assert [line["label"] for line in lines] == [e["label"] for e in expected]
    texts = tmp_path / "texts.txt"
    texts.write_text("a wonderful, moving film\n\nboring and far too long\n")
    assert main(["predict", "--model", str(exported(base, "text")), "--input", str(texts)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["line"] for line in lines] == [1, 3]
    assert all(abs(sum(line["probabilities"].values()) - 1) < 1e-6 for line in lines)


def _one_error_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("mxlstm: error:"), err
    return err[0]


@pytest.fixture
def quiet_root(monkeypatch, capsys):
    """A fresh `mxlstm` process logs warnings only: drop the train-log handlers of this one."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers",
                        [h for h in root.handlers if not getattr(h, "_mxlstm", False)])
    capsys.readouterr()


def test_cli_bad_input_exits_2_with_one_line(base, tmp_path, capsys, quiet_root):
    prefix, run = exported(base, "digits"), tiny_run(base, "vowels")
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", np.zeros((2, 8, 7)))
    cases = [["predict", "--model", str(prefix), "--input", str(tmp_path / "bad.npy")],
             ["predict", "--model", str(tmp_path / "nothing"), "--input", str(tmp_path)],
             ["export", "--model", str(run), "--out", str(tmp_path / "f"), "--fixed-length"]]
    messages = ["expects 8", "missing exported file", "cannot export with --fixed-length"]
    for argv, message in zip(cases, messages):
        assert message in _one_error_line(argv, capsys)
    proc = subprocess.run([sys.executable, "-m", "mxlstm.cli"] + cases[0], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("mxlstm: error:")


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (make onnx)")
def test_cli_onnx_of_another_run_exits_2_with_one_line(base, tmp_path, capsys, quiet_root):
    prefix = exported(base, "digits-uni")
    capsys.readouterr()
    from mxlstm.deploy.onnx_export import export_onnx as onnx_of
    with pytest.raises(ModelFileError, match="export was made from run 'digits-uni', not "
                                             "'vowels'"):
        onnx_of(prefix, model_dir=tiny_run(base, "vowels"))


@pytest.mark.skipif(HAS_ONNX, reason="onnx and onnxruntime are installed")
def test_cli_onnx_without_runtime_exits_2_saying_how_to_install(base, tmp_path, capsys,
                                                                quiet_root):
    run = tiny_run(base, "vowels")
    capsys.readouterr()
    argv = ["export", "--model", str(run), "--out", str(tmp_path / "o"), "--onnx"]
    assert "install them with: " in _one_error_line(argv, capsys)

"""ONNX exports of trained runs: verification recorded, the ONNX Runtime predictor equal to
the MXNet one, int8, refusals, the CLI.

Skipped without onnx / onnxruntime (``make onnx`` installs them). Tiny runs come from
``test_predictor.py``'s helpers (trained once per session, shared with the other files).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_predictor import RUNS, TINY, exported, probs, tiny_run

from mxlstm import runs
from mxlstm.cli import main
from mxlstm.config import apply_overrides
from mxlstm.data.fileio import embedded_path
from mxlstm.data.sources import load_digits, load_ts
from mxlstm.deploy.export import export_model
from mxlstm.deploy.onnx_export import export_onnx
from mxlstm.deploy.predictor import ModelFilesError, Predictor
from mxlstm.errors import ModelFileError
from mxlstm.tasks import default_config

pytestmark = pytest.mark.onnx  # `make test-onnx` runs these (-m onnx)
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from mxlstm.deploy.onnx_graph import OPSET  # noqa: E402

TEXTS = ["a wonderful, moving film", "boring", "the plot was thin but the actors were "
         "superb and the music moving", "far too long"]


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """The run cache shared with test_predictor.py (same session directory)."""
    path = tmp_path_factory.getbasetemp() / "deploy-runs"
    path.mkdir(exist_ok=True)  # tiny_run('lm') writes its corpus there first
    return path


def read_meta(prefix: Path) -> dict:
    return json.loads(Path(str(prefix) + "-meta.json").read_text())


def onnx_exported(base: Path, name: str, streaming: bool = False) -> Path:
    prefix = exported(base, name, streaming)
    if not (read_meta(prefix).get("onnx") or {}).get("exported"):
        export_onnx(prefix, model_dir=tiny_run(base, name), int8=True)
    return prefix


def raw_inputs(name: str) -> list:
    if name == "text":
        return TEXTS
    if name.startswith("vowels"):  # series of several lengths
        rng = np.random.RandomState(0)
        return [rng.randn(n, 12) for n in (7, 20, 13, 29, 9)]
    seqs = load_digits().sequences[:6]
    return [s[:n] for s, n in zip(seqs, (8, 3, 8, 5, 1, 8))]  # prefixes: lengths vary


@pytest.mark.parametrize("name", ["digits", "vowels", "vowels-fcn", "text"])
def test_variable_length_classifier_matches_the_mxnet_predictor(base, name):
    prefix = onnx_exported(base, name)
    record = read_meta(prefix)["onnx"]
    assert record["exported"] and record["opset"] == OPSET
    assert record["recurrent_ops"] == "1 x ONNX LSTM bidirectional with sequence_lens"
    check = record["verification"]
    assert check["max_abs_diff"] <= 1e-5 and check["states_max_abs_diff"] <= 1e-5
    assert len(check["batches"]) == 3 and check["batches"][2][0] == 1
    mx_p, ort_p = Predictor(prefix), Predictor(prefix, backend="onnxruntime")
    assert ort_p.input_names == ["data", "valid_length"] and not hasattr(ort_p, "block")
    items = raw_inputs(name)
    mine, theirs = mx_p.predict(items), ort_p.predict(items)
    assert np.abs(probs(mine, mx_p.labels) - probs(theirs, mx_p.labels)).max() <= 1e-5
    assert [a["label"] for a in mine] == [a["label"] for a in theirs]
    if name == "vowels-fcn":  # the preset's LSTM-FCN: conv branch, batch norm
        assert record["other_stages"] == ["3 x Conv (BatchNorm folded in)/Relu [64, 128, 64]"
                                          ", masked mean"]
    alone = [ort_p.predict_one(item) for item in items]  # unpadded, one at a time
    assert np.abs(probs(alone, mx_p.labels) - probs(theirs, mx_p.labels)).max() <= 1e-5


def test_language_model_and_streaming_carry_states(base):
    for name, streaming in (("lm", False), ("digits-uni", True)):
        prefix = onnx_exported(base, name, streaming)
        record = read_meta(prefix)["onnx"]
        assert record["verification"]["states_max_abs_diff"] <= 1e-5
        assert record["inputs"][1:] == [s["name"] for s in read_meta(prefix)["input"]["states"]]
        mx_p, ort_p = Predictor(prefix), Predictor(prefix, backend="onnxruntime")
        chunks = (["she had been forced", " into prudence in her youth"] if name == "lm"
                  else [load_digits().sequences[0][:3], load_digits().sequences[0][3:]])
        states = {"mx": None, "ort": None}
        for chunk in chunks:
            a, states["mx"] = mx_p.stream(chunk, states["mx"], top_k=3)
            b, states["ort"] = ort_p.stream(chunk, states["ort"], top_k=3)
            assert a.get("next_token", a.get("label")) == b.get("next_token", b.get("label"))
            for x, y in zip(states["mx"], states["ort"]):
                assert np.abs(x - y).max() <= 1e-5
        key = "token" if name == "lm" else "label"
        assert max(abs(x["probability"] - y["probability"]) for x, y in
                   zip(a["top_k"], b["top_k"])) <= 1e-5 and \
            [x[key] for x in a["top_k"]] == [y[key] for y in b["top_k"]]


def test_int8_graph_is_smaller_quantized_and_runs(base):
    prefix = onnx_exported(base, "digits")
    int8 = read_meta(prefix)["onnx"]["int8"]
    path = Path(str(prefix) + "-int8.onnx")
    assert int8["file"] == path.name and path.is_file()
    assert int8["size_ratio"] == round(Path(str(prefix) + ".onnx").stat().st_size
                                       / path.stat().st_size, 3) and int8["size_ratio"] > 1.5
    assert int8["quantized_ops"].get("DynamicQuantizeLSTM") == 1
    p8 = Predictor(prefix, backend="onnxruntime-int8")
    fp = Predictor(prefix, backend="onnxruntime")
    items = raw_inputs("digits")
    diff = np.abs(probs(p8.predict(items), fp.labels) - probs(fp.predict(items), fp.labels))
    assert 0 < diff.max() < 0.2  # int8 moves the answers a little, not far


def test_onnx_backend_refuses_missing_or_foreign_files(base, tmp_path):
    prefix = exported(base, "digits-uni")  # an export without --onnx
    with pytest.raises(ModelFilesError, match="no ONNX graph in this export"):
        Predictor(prefix, backend="onnxruntime")
    good = onnx_exported(base, "digits")
    meta = read_meta(good)
    meta["onnx"]["sha256"] = "0" * 64
    copy = tmp_path / "digits"
    Path(str(copy) + "-meta.json").write_text(json.dumps(meta))
    Path(str(copy) + ".onnx").write_bytes(Path(str(good) + ".onnx").read_bytes())
    with pytest.raises(ModelFilesError, match="sha256 differs"):
        Predictor(copy, backend="onnxruntime")


def test_layer_norm_model_is_refused_in_one_line(base, tmp_path, capsys, monkeypatch):
    out = base / "digits-ln"
    if not (out / "report.json").exists():
        runs.train(apply_overrides(default_config("digits"), {**TINY, **RUNS["digits"],
                                                              "model.layer_norm": True},
                                   "test"), out)
    prefix = tmp_path / "ln"
    export_model(out, prefix)
    with pytest.raises(ModelFileError, match="ONNX export refused: layer normalisation"):
        export_onnx(prefix, model_dir=out)
    record = read_meta(prefix)["onnx"]
    assert record["exported"] is False and "layer_norm" in record["refused"]
    assert not Path(str(prefix) + ".onnx").exists()
    root = logging.getLogger()  # a fresh `mxlstm` process has no train-log handlers
    monkeypatch.setattr(root, "handlers",
                        [h for h in root.handlers if not getattr(h, "_mxlstm", False)])
    capsys.readouterr()
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "c"), "--onnx"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("mxlstm: error: ONNX export refused: layer")


def test_cli_export_onnx_int8_and_predict_with_onnxruntime(base, tmp_path, capsys):
    prefix = tmp_path / "cli" / "vowels"
    argv = ["export", "--model", str(tiny_run(base, "vowels")), "--out", str(prefix),
            "--onnx", "--int8"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["onnx"]["max_abs_diff"] <= 1e-5 and summary["onnx"]["opset"] == OPSET
    from mxlstm.deploy.ship import STANDALONE_FILES

    assert sorted(f.name for f in prefix.parent.iterdir()) == sorted([
        "vowels-0000.params", "vowels-int8.onnx", "vowels-meta.json", "vowels-symbol.json",
        "vowels.onnx", *STANDALONE_FILES])
    np.savez(tmp_path / "x.npz", x=np.random.RandomState(1).randn(3, 20, 12),
             lengths=np.array([20, 4, 11]))
    answers = {}
    for backend in ("mxnet", "onnxruntime"):
        assert main(["predict", "--model", str(prefix), "--input", str(tmp_path / "x.npz"),
                     "--backend", backend]) == 0
        answers[backend] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    labels = list(answers["mxnet"][0]["probabilities"])
    assert np.abs(probs(answers["mxnet"], labels) - probs(answers["onnxruntime"], labels)
                  ).max() <= 1e-5
    capsys.readouterr()
    assert main(["export", "--model", str(tiny_run(base, "vowels")), "--out",
                 str(tmp_path / "x"), "--int8"]) == 2
    assert "--int8 quantizes the ONNX graph" in capsys.readouterr().err


def test_latency_interleaves_backends_and_records_threads(base):
    from mxlstm.deploy.latency import measure_latency

    prefix = onnx_exported(base, "digits")
    backends = ("mxnet", "onnxruntime", "onnxruntime-int8")
    result = measure_latency([str(prefix)], batch_sizes=(1, 3), repeats=4, warmup=1,
                             rounds=2, backends=backends, ort_threads=1)
    assert [e["backend"] for e in result["exports"]] == list(backends)
    assert "vs_first" not in result["exports"][0]["batches"]["1"]
    for export in result["exports"]:
        numbers = export["batches"]["1"]["end_to_end"]
        assert 0 < numbers["p50_ms"] <= numbers["p90_ms"] <= numbers["p99_ms"]
    assert result["exports"][2]["batches"]["3"]["vs_first"]["graph_only"] > 0
    threads = result["machine"]["onnxruntime"]
    assert threads["intra_op_num_threads"] == 1 and threads["version"] == ort.__version__


def test_univariate_series_model_fixed_length_and_one_line_refusals(base, tmp_path, capsys):
    """GunPoint with the uea preset: per-series z-norm, windows of 2 of its 150 steps, the
    conv branch; both exports (valid_length, --fixed-length) in MXNet and ONNX Runtime."""
    run = tiny_run(base, "uea-gunpoint")
    prefix = onnx_exported(base, "uea-gunpoint")
    record = read_meta(prefix)["onnx"]
    assert record["other_stages"][:2] == ["per-series z-normalisation",
                                          "windows of 2 steps averaged"]
    # the preset's model holds two convolutional branches (64-128-64 filters at windows of
    # 2 and at every step) with batch norm folded into the ONNX weights: float32 rounding
    assert record["verification"]["max_abs_diff"] <= 5e-5
    series = load_ts(embedded_path("uea/GunPoint_TEST.ts")).sequences[:5]
    items = [s[:n] for s, n in zip(series, (150, 90, 37, 150, 3))]
    mx_p, ort_p = Predictor(prefix), Predictor(prefix, backend="onnxruntime")
    labels = mx_p.labels
    assert np.abs(probs(mx_p.predict(items), labels)
                  - probs(ort_p.predict(items), labels)).max() <= 1e-5
    fixed = tmp_path / "fixed"
    meta = export_model(run, fixed, fixed_length=True)
    assert meta["input"]["names"] == ["data"] and meta["input"]["fixed_length"] == 150
    assert meta["verification"]["fixed_length_vs_trained_max_abs_diff"] <= 1e-5
    export_onnx(fixed, model_dir=run)
    full = series[:4]
    expected = probs(mx_p.predict(full), labels)
    for backend in ("mxnet", "onnxruntime"):
        got = probs(Predictor(fixed, backend=backend).predict(full), labels)
        assert np.abs(got - expected).max() <= 1e-5, backend
    capsys.readouterr()
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "s"),
                 "--streaming"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(
        "mxlstm: error: cannot export for streaming: the series model reads the whole series")


def test_int8_of_the_series_model_quantizes_conv_statically_on_training_samples(base, tmp_path):
    import onnx

    from mxlstm.deploy.int8_report import onnx_test_metric
    from mxlstm.deploy.onnx_calibrate import calibration_batches, calibration_indices
    from mxlstm.deploy.onnx_quantize import quantize

    prefix = onnx_exported(base, "vowels-fcn")
    record = read_meta(prefix)["onnx"]["int8"]
    assert record["quantized_ops"]["QLinearConv"] == 3  # the preset's three conv layers
    assert record["quantized_ops"]["DynamicQuantizeLSTM"] == 1 and "QOperator" in record["method"]
    run = tiny_run(base, "vowels-fcn")
    prepared, _, meta = runs.load_model(run)
    train = prepared.train_loader._dataset._dataset  # the split under the augmentation
    batches = calibration_batches(prepared, read_meta(prefix))
    index = calibration_indices(len(train))
    assert record["calibration"]["samples"] == len(index) == sum(len(b["data"]) for b in batches)
    first = train[int(index[1])][0]  # calibration rows are training rows, not augmented ones
    assert np.array_equal(batches[0]["data"][1, :len(first)], np.asarray(first))
    again = calibration_batches(prepared, read_meta(prefix))  # deterministic
    assert all(np.array_equal(a["data"], b["data"]) for a, b in zip(batches, again))
    copy = tmp_path / "again-int8.onnx"  # the same batches give the same file
    assert quantize(Path(str(prefix) + ".onnx"), copy, again) == record["quantized_ops"]
    assert copy.read_bytes() == Path(str(prefix) + "-int8.onnx").read_bytes()
    hints = [v.name for v in onnx.load(str(copy)).graph.value_info]  # in any process
    assert hints and hints == sorted(hints)
    assert record["vs_fp32_valid"]["top1_agreement"] >= 0.9
    fp32_only = tmp_path / "fp32conv"
    export_model(run, fp32_only)
    kept = export_onnx(fp32_only, model_dir=run, int8=True, int8_conv=False)["int8"]
    assert "QLinearConv" not in kept["quantized_ops"] and "calibration" not in kept
    assert record["size_ratio"] > 2 * kept["size_ratio"]  # the conv weights dominate
    meta = read_meta(prefix)  # real test rows (random ones lie outside the calibrated ranges)
    fp32, int8 = (onnx_test_metric(prepared, meta, Path(str(prefix) + suffix))["accuracy"]
                  for suffix in (".onnx", "-int8.onnx"))
    assert fp32 > 0.5 and abs(int8 - fp32) <= 0.03


def test_seed_ensemble_exports_as_one_onnx_graph(base):
    prefix = onnx_exported(base, "vowels-ens")
    record = read_meta(prefix)["onnx"]
    assert record["recurrent_ops"] == "2 x 1 x ONNX LSTM bidirectional with sequence_lens"
    assert record["other_stages"][-1] == "2 ensemble members averaged"
    assert record["verification"]["max_abs_diff"] <= 1e-5
    assert record["verification"]["states_max_abs_diff"] is None  # members' states: no
    mx_p, ort_p = Predictor(prefix), Predictor(prefix, backend="onnxruntime")
    items = raw_inputs("vowels")
    assert np.abs(probs(mx_p.predict(items), mx_p.labels)
                  - probs(ort_p.predict(items), mx_p.labels)).max() <= 1e-5


def test_ort_profile_names_where_the_time_goes(base):
    from mxlstm.deploy.ort_profile import profile_export

    prefix = onnx_exported(base, "vowels-fcn")
    fp32 = profile_export(str(prefix), batch_size=3, calls=20)
    assert fp32["calls_timed"] == 18 and fp32["input_shape"][0] == 3
    assert {"LSTM", "FusedConv"} <= set(fp32["ops"])  # ORT fuses Conv + Relu
    assert fp32["ops"]["FusedConv"]["nodes"] == 3
    assert abs(sum(o["share"] for o in fp32["ops"].values()) - 1) < 0.01
    int8 = profile_export(str(prefix), int8=True, batch_size=3, calls=20)
    assert "DynamicQuantizeLSTM" in int8["ops"] and "LSTM" not in int8["ops"]


def test_check_tolerance_is_absolute_plus_relative_and_refuses(base, tmp_path, monkeypatch):
    from mxlstm.deploy import onnx_check

    big, small = np.array([20.0, -20.0]), np.array([0.1, -0.1])
    assert onnx_check.excess(big, big + 1.5e-5) <= 1e-5  # a few ulp of a logit of 20
    assert onnx_check.excess(small, small + 1.5e-5) > 1e-5  # the same near 0: refused
    monkeypatch.setattr(onnx_check, "excess", lambda a, b: 1.0)
    run = tiny_run(base, "digits")
    export_model(run, tmp_path / "d")
    with pytest.raises(ModelFileError, match="ONNX export refused: ONNX Runtime differs"):
        export_onnx(tmp_path / "d", model_dir=run)
    assert not (tmp_path / "d.onnx").exists()

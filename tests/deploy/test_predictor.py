"""The standalone predictor: a fresh process without mxlstm reproduces the trained models.

Tiny runs (1 epoch, 2 batches, hidden 16) are trained once per session into the session's
base temp dir and shared with ``test_export.py`` through that directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from mxlstm import runs
from mxlstm.data.fileio import embedded_path, read_lines, read_text
from mxlstm.data.sources import NormalizationStats, load_digits, load_ts
from mxlstm.data.text import encode, load_movie_reviews, tokenize
from mxlstm.deploy import predictor as standalone
from mxlstm.deploy.export import export_model
from mxlstm.deploy.latency import measure_latency
from mxlstm.deploy.ship import STANDALONE_FILES, ship_predictor
from mxlstm.tasks import user_config

TINY = {"train.epochs": 1, "train.max_batches": 2, "model.hidden_size": 16,
        "train.progress": False, "train.eval_batch_size": 64}
RUNS = {"digits": {}, "digits-uni": {"model.bidirectional": False},
        "text": {"model.embed_size": 16, "train.ensemble": 1},  # one model (preset: 3)
        # the recurrent model; "vowels-fcn" is the preset's series model (LSTM-FCN) and
        # "uea-gunpoint" the univariate one (per-series z-norm, windows of 2 of 150 steps)
        "vowels": {"model.family": "lstm", "model.series_norm": "false", "model.max_steps": 0},
        # trained to ~90% (20 whole epochs, ~10 s): the int8 tests compare against it
        "vowels-fcn": {"train.epochs": 20, "train.max_batches": 0},
        "uea-gunpoint": {"data.name": "GunPoint"},
        "vowels-ens": {"train.ensemble": 2},  # a seed ensemble of two LSTM-FCNs
        "lm": {"data.max_vocab": 500, "model.embed_size": 16, "train.eval_batch_size": 8}}


def tiny_run(base: Path, name: str) -> Path:
    """Train run ``name`` of :data:`RUNS` into ``base/name`` unless it is there already."""
    out = base / name
    if not (out / "report.json").exists():
        overrides = {**TINY, **RUNS[name]}
        if name == "lm":  # a short corpus keeps the run (and every reload) quick
            corpus = base / "corpus.txt"
            corpus.write_text(read_text(embedded_path("austen/persuasion.txt.gz"))[:40000])
            overrides["data.path"] = str(corpus)
        # as the command line does it: the given epochs / batches turn off the preset's
        # train.min_steps (else the series presets would train for 1,000 steps)
        runs.train(user_config(name.split("-")[0], flags=overrides), out)
    return out


def exported(base: Path, name: str, streaming: bool = False) -> Path:
    prefix = base / "exports" / (name + ("-stream" if streaming else ""))
    if not Path(str(prefix) + "-meta.json").exists():
        export_model(tiny_run(base, name), prefix, streaming=streaming)
    return prefix


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "deploy-runs"


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def live_classifier(model, rows: list[np.ndarray], pad: float = 0.0) -> np.ndarray:
    """Probabilities of the trained model on preprocessed rows, padded into one batch."""
    lengths = [len(r) for r in rows]
    x = np.full((len(rows), max(lengths)) + rows[0].shape[1:], pad, dtype=rows[0].dtype)
    for k, r in enumerate(rows):
        x[k, :len(r)] = r
    out = model(mx.nd.array(x, dtype=x.dtype), mx.nd.array(lengths))
    return softmax(out.asnumpy().astype(np.float64))


def probs(answers: list[dict], labels: list[str]) -> np.ndarray:
    return np.array([[a["probabilities"][name] for name in labels] for a in answers])


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_equals_mxlstm_tokenize():
    texts = load_movie_reviews().texts + [
        "Hello, world 有趣 新闻!", "Ça coûte 3,50 € — naïve café", "don't STOP 12abc x_y",
        "한국어 텍스트와 カタカナ mixed", "e\u0301te\u0301 Ω≈ç √ 𠀀𠀁 ﾊﾟ", "tab\tnew\nline  "]
    for text in texts:
        assert standalone.tokenize(text) == tokenize(text), text
        assert standalone.tokenize(text, "chars") == tokenize(text, "char")


def test_predictor_module_imports_no_mxlstm():
    stdlib = {"__future__", "argparse", "csv", "gzip", "hashlib", "io", "json", "math", "os", "re",
              "stat", "sys", "unicodedata", "warnings", "zipfile", "zlib", "collections",
              "functools", "dataclasses"}
    siblings = {"predictor_inputs", "predictor_files", "predictor_meta", "preprocess",
                "kinds", "predictor_backends", ""}  # "": relative imports inside the package
    allowed = {"predictor": stdlib | {"numpy"} | siblings,
               "predictor_backends": stdlib | {"numpy", "mxnet", "onnxruntime"} | siblings,
               "predictor_inputs": stdlib | {"numpy"} | siblings,
               "predictor_files": stdlib | siblings, "predictor_meta": stdlib | siblings,
               "preprocess": stdlib | {"numpy"}, "kinds": stdlib}
    assert sorted(allowed) == sorted(n[:-3] for n in STANDALONE_FILES)
    for name, modules in allowed.items():
        source = STANDALONE_FILES[name + ".py"].read_text()
        imported = {(a or b).split(".")[0] for a, b in re.findall(
            r"^\s*(?:from\s+(\.?[\w.]*)\s+import|import\s+([\w.]+))", source, flags=re.M)}
        assert ("mxnet" in imported) == (name == "predictor_backends")
        assert imported <= modules, (name, imported - modules)
        top_level = re.findall(r"^import (\w+)", source, flags=re.M)
        assert "mxnet" not in top_level and "onnxruntime" not in top_level  # lazy only


# ----------------------------------------------------------------------------- fresh process
CHILD = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.append(sys.argv[2])
import predictor as P
jobs, out = json.loads(sys.argv[3]), {}
for name, job in jobs.items():
    p = P.Predictor(job["prefix"])
    items = [i for _, i in P.read_inputs(job["file"], p.meta)] if "file" in job else job["items"]
    k = job.get("top_k")
    out[name] = {"single": [p.predict_one(i, top_k=k) for i in items],
                 "batch": p.predict(items, top_k=k)}
out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("mxlstm", "gluonnlp"))
print(json.dumps(out))
"""


def test_fresh_process_matches_training_model(base, tmp_path):
    prefixes = {name: exported(base, name)
                for name in ("digits", "text", "vowels", "vowels-fcn", "lm")}
    deploy = tmp_path / "deploy"  # the predictor file copied next to the exported files
    deploy.mkdir()
    ship_predictor(deploy)  # predictor.py and its siblings
    for name, prefix in prefixes.items():
        for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
            shutil.copy(str(prefix) + suffix, deploy / (name + suffix))
    digits = load_digits()
    digit_rows = [digits.sequences[k][:t] for k, t in zip(range(5), (8, 5, 3, 8, 6))]
    reviews = load_movie_reviews().texts[:5]
    texts = reviews + ["Hello, world 有趣 新闻!", " ".join(reviews) * 3, "zzqx unknownword"]
    ts_lines = read_lines(embedded_path("uea/JapaneseVowels_TEST.ts"))
    start = next(k for k, line in enumerate(ts_lines) if line.startswith("@data")) + 1
    data = ts_lines[start:start + 6]
    data[1] = "?," + data[1].split(",", 1)[1]  # a missing value, interpolated as in training
    ts_file = tmp_path / "vowels.ts"
    ts_file.write_text("\n".join(ts_lines[:start] + data) + "\n")
    prompts = ["it is a truth universally acknowledged that", "she was", "Anne"]
    jobs = {"digits": {"prefix": str(deploy / "digits"), "items": [r.tolist() for r in digit_rows]},
            "text": {"prefix": str(deploy / "text"), "items": texts},
            "vowels": {"prefix": str(deploy / "vowels"), "file": str(ts_file)},
            "vowels-fcn": {"prefix": str(deploy / "vowels-fcn"), "file": str(ts_file)},
            "lm": {"prefix": str(deploy / "lm"), "items": prompts, "top_k": 10}}
    site = sysconfig.get_paths()["purelib"]
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(deploy), site,
                           json.dumps(jobs)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["modules"] == []  # neither mxlstm nor gluonnlp was imported

    def check(name: str, rows: list, pad: float = 0.0) -> None:
        prepared, _, meta = runs.load_model(tiny_run(base, name))
        labels = meta["label_names"]
        single = np.concatenate([live_classifier(prepared.model, [r], pad) for r in rows])
        assert np.abs(probs(got[name]["single"], labels) - single).max() <= 1e-6
        batch = live_classifier(prepared.model, rows, pad)
        assert np.abs(probs(got[name]["batch"], labels) - batch).max() <= 1e-6
        assert [a["label"] for a in got[name]["batch"]] == [labels[k] for k in
                                                            batch.argmax(axis=1)]

    meta = json.loads(Path(str(prefixes["digits"]) + "-meta.json").read_text())
    stats = NormalizationStats.from_dict(meta["preprocessing"]["normalization"])
    check("digits", [stats.apply(r) for r in digit_rows])

    _, text_meta = runs.load_run(tiny_run(base, "text"))
    from gluonnlp import Vocab
    vocab = Vocab.from_json(text_meta["files"]["vocab.json"])
    limit = text_meta["input"]["max_length"]
    check("text", [encode(tokenize(t), vocab)[:limit] for t in texts],
          pad=text_meta["input"]["pad_id"])

    _, vowel_meta = runs.load_run(tiny_run(base, "vowels"))
    vowel_stats = NormalizationStats.from_dict(vowel_meta["normalization"])
    series = load_ts(ts_file).sequences
    assert len({len(s) for s in series}) > 1
    check("vowels", [vowel_stats.apply(s) for s in series])
    _, fcn_meta = runs.load_run(tiny_run(base, "vowels-fcn"))  # LSTM-FCN: conv, batch norm
    fcn_stats = NormalizationStats.from_dict(fcn_meta["normalization"])
    check("vowels-fcn", [fcn_stats.apply(s) for s in series])

    prepared, _, lm_meta = runs.load_model(tiny_run(base, "lm"))
    lm_vocab = Vocab.from_json(lm_meta["files"]["vocab.json"])
    for prompt, answer in zip(prompts, got["lm"]["batch"]):
        ids = encode(tokenize(prompt), lm_vocab)[None]
        logits, _ = prepared.model(mx.nd.array(ids, dtype="int32"),
                                   prepared.model.begin_state(1))
        p = softmax(logits.asnumpy()[0, -1].astype(np.float64))
        top = [lm_vocab.to_indices(t["token"]) for t in answer["top_k"]]
        assert np.abs(np.array([t["probability"] for t in answer["top_k"]]) - p[top]).max() \
            <= 1e-6
        assert p[top].min() >= np.sort(p)[-10] - 1e-6  # the ten most likely (up to ties)
    for one, many in zip(got["lm"]["single"], got["lm"]["batch"]):
        one, many = ({t["token"]: t["probability"] for t in a["top_k"]} for a in (one, many))
        assert one.keys() == many.keys()
        assert max(abs(one[k] - many[k]) for k in one) <= 1e-6


def test_language_model_stream_equals_one_pass(base):
    p = standalone.Predictor(exported(base, "lm"))
    whole = p.predict_one("she was not sorry to", top_k=5)
    answer, states = p.stream("she was", top_k=5)
    answer, states = p.stream("not sorry to", states, top_k=5)
    assert [t["token"] for t in answer["top_k"]] == [t["token"] for t in whole["top_k"]]
    assert np.allclose([t["probability"] for t in answer["top_k"]],
                       [t["probability"] for t in whole["top_k"]], atol=1e-6)
    assert [s.shape for s in states] == [(2, 1, 16), (2, 1, 16)]


def test_one_input_takes_the_fast_path_to_the_same_answer(base):
    p = standalone.Predictor(exported(base, "digits"))
    rows = [np.random.RandomState(k).randn(n, 8) for k, n in ((0, 5), (1, 8))]
    x, lengths = p.batch(rows[:1])
    assert x.dtype == np.float32 and x.shape == (1, 5, 8) and lengths.tolist() == [5.0]
    assert np.array_equal(x[0], p.batch(rows)[0][0, :5])  # the padded batch's first row
    logits = np.random.RandomState(2).randn(1, len(p.labels)).astype(np.float32)
    tied = np.zeros_like(logits)  # ties keep the label order, as the stable argsort
    for row in (logits, tied, 30 * logits):
        one, batched = p._label_answers(row, 4), p._label_answers(np.repeat(row, 2, 0), 4)
        assert [a["label"] for a in one[0]["top_k"]] == [a["label"] for a in batched[0]["top_k"]]
        assert one[0]["label"] == batched[0]["label"]
        assert np.allclose(probs(one, p.labels), probs(batched[:1], p.labels), rtol=1e-14)
    assert [a["label"] for a in p._label_answers(tied, 3)[0]["top_k"]] == p.labels[:3]
    broken = np.full_like(logits, np.nan)  # NaN logits: numpy's rules, as before
    one, batched = p._label_answers(broken, 2)[0], p._label_answers(np.repeat(broken, 2, 0), 2)[0]
    assert [a["label"] for a in one["top_k"]] == [a["label"] for a in batched["top_k"]]
    assert np.isnan(list(one["probabilities"].values())).all()


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_give_clear_errors(base, tmp_path):
    digits, text = exported(base, "digits"), exported(base, "text")
    p = standalone.Predictor(digits)
    with pytest.raises(standalone.InputError, match="7 features per step, the model expects 8"):
        p.predict_one(np.zeros((8, 7)))
    with pytest.raises(standalone.InputError, match="non-numeric"):
        p.predict_one([["a"] * 8])
    with pytest.raises(standalone.InputError, match="found 1 channel"):
        p.predict_one("1,2,3,abc")
    with pytest.raises(standalone.InputError, match="NaN or infinite"):
        p.predict_one(np.full((3, 8), np.nan))
    t = standalone.Predictor(text)
    for empty in ("", "   \t"):
        with pytest.raises(standalone.InputError, match="empty text"):
            t.predict_one(empty)
    with pytest.raises(standalone.PredictorError):  # both are ValueErrors too
        t.predict([])
    copy = tmp_path / "m"
    for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
        shutil.copy(str(digits) + suffix, str(copy) + suffix)
    shutil.copy(str(text) + "-meta.json", str(copy) + "-meta.json")  # another model's meta
    with pytest.raises(standalone.ModelFilesError, match="does not belong"):
        standalone.Predictor(copy)
    Path(str(copy) + "-meta.json").write_text("{not json")
    with pytest.raises(standalone.ModelFilesError, match="damaged"):
        standalone.Predictor(copy)
    Path(str(copy) + "-meta.json").write_text('{"format": "something else"}')
    with pytest.raises(standalone.ModelFilesError, match="not an mxlstm export"):
        standalone.Predictor(copy)
    Path(str(copy) + "-meta.json").unlink()
    with pytest.raises(standalone.ModelFilesError, match="missing exported file.*-meta.json"):
        standalone.Predictor(copy)


def test_read_inputs_formats(tmp_path):
    meta = {"input": {"type": "float", "features": 1}}
    csv = tmp_path / "series.csv"
    csv.write_text("1,2,3\n\n# a comment\n4,?,6,7\n")
    with pytest.raises(standalone.InputError, match="cannot tell whether the last column"):
        standalone.read_inputs(str(csv), meta)  # lengths vary, no class names: ambiguous
    items = standalone.read_inputs(str(csv), meta, label_column="no")
    assert [n for n, _ in items] == [1, 4]
    assert items[1][1][:, 0].tolist() == [4, 5, 6, 7]
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,x\n")
    with pytest.raises(standalone.InputError, match=r"bad.csv:2: non-numeric value 'x'"):
        standalone.read_inputs(str(bad), meta)
    np.save(tmp_path / "a.npy", np.zeros((2, 5)))
    assert [x.shape for _, x in standalone.read_inputs(str(tmp_path / "a.npy"), meta)] == \
        [(5, 1), (5, 1)]
    ts = tmp_path / "x.ts"
    ts.write_text("@problemName x\n@classLabel true a b\n@data\n1,2,3:a\n4,5:b\n")
    assert [len(x) for _, x in standalone.read_inputs(str(ts), meta)] == [3, 2]


def test_latency_measurement(base, tmp_path):
    variable = exported(base, "digits")
    fixed = tmp_path / "fixed"
    export_model(tiny_run(base, "digits"), fixed, fixed_length=True)
    result = measure_latency([str(variable), str(fixed)], batch_sizes=(1, 4), repeats=5,
                             warmup=1, rounds=2)
    assert [e["inputs"] for e in result["exports"]] == [["data", "valid_length"], ["data"]]
    for export in result["exports"]:
        for batch in ("1", "4"):
            entry = export["batches"][batch]
            assert entry["input_shape"] == [int(batch), 8, 8]
            for part in ("end_to_end", "graph_only"):
                numbers = entry[part]
                assert 0 < numbers["p50_ms"] <= numbers["p90_ms"]
                low, high = numbers["rounds_p50_ms"]
                assert 0 < low <= high
                assert numbers["throughput_per_s"] > 0
    assert "vs_first" not in result["exports"][0]["batches"]["1"]
    assert result["exports"][1]["batches"]["1"]["vs_first"]["graph_only"] > 0

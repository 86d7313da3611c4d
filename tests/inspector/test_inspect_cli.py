"""``mxlstm inspect`` end to end on tiny trained runs (LSTM, GRU, RNN; numeric, character
LM and tagging tasks): files, arrays equal to the API, pictures (skipped without
matplotlib), the no-matplotlib line, and bad input as one line with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mxlstm.cli import main
from mxlstm.inspect import plots, trace
from mxlstm.runs import load_model

TINY = ["--set", "train.progress=false", "--set", "model.hidden_size=8", "--epochs", "1",
        "--set", "train.max_batches=2"]
RUNS = {
    "digits-lstm": ["--task", "digits", "--set", "data.augment="],
    "lm-gru": ["--task", "lm", "--set", "model.cell=gru", "--set", "data.level=char",
               "--set", "model.num_layers=1",
               "--set", "model.embed_size=8", "--set", "data.bptt=20",
               "--set", "train.eval_batch_size=4", "--set", "train.batch_size=4"],
    "copy-rnn": ["--task", "copy", "--set", "model.cell=rnn", "--set", "data.num_train=64",
                 "--set", "data.num_eval=16", "--set", "data.seq_length=10",
                 "--set", "data.copy_length=3", "--set", "model.embed_size=4"],
}
HAVE_MPL = plots.import_pyplot() is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(f'"Line {k}," she said (quietly), "is it?"\nAnd so on.'
                                  for k in range(300)))
    made = {}
    for name, flags in RUNS.items():
        extra = ["--data", str(corpus)] if name.startswith("lm") else []
        assert main(["train", "--out", str(root / name), *TINY, *flags, *extra]) == 0
        made[name] = root / name
    made["text"] = corpus.read_text()
    return made


@pytest.mark.parametrize("name", list(RUNS))
def test_inspect_writes_trace_summary_and_pictures(name, runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["inspect", "--model", str(runs[name]), "--index", "0", "2", "--out",
                 str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cell = name.split("-")[1]
    assert printed["cell"] == cell and printed["index"] == [0, 2]
    arrays = np.load(out / "trace.npz", allow_pickle=False)
    summary = json.loads((out / "summary.json").read_text())
    parts = {"lstm": "ifogch", "gru": "rznh", "rnn": "ah"}[cell]
    keys = ["l0", "r0"] if name.startswith("digits") else ["l0"]  # digits preset: bidirectional
    for key in keys:
        for part in parts:
            assert arrays[f"{key}/{part}"].shape[::2] == (2, 8), (key, part)
        assert arrays[f"grad/{key}"].ndim == 1 and np.isfinite(arrays[f"grad/{key}"]).all()
    # the written arrays are the API's trace of the same examples
    prepared, _, _ = load_model(runs[name])
    if name.startswith("digits"):
        x = np.stack([b for b in _first_examples(prepared, 3)])[[0, 2]]
        again = trace(prepared.model, x)
        np.testing.assert_allclose(arrays["r0/c"], again.parts["r0"]["c"], atol=1e-6)
    gates = {"lstm": {"i", "f", "o"}, "gru": {"r", "z"}, "rnn": set()}[cell]
    assert set(summary["saturation"]["l0"]) == gates
    assert summary["steps"] > 0 and summary["top_units"]["l0"]
    assert set(summary["gradient_flow"]["early_over_late"]) == {*keys, "input"}
    if name.startswith("lm"):  # characters label the time axis; char features correlate
        window = "".join(summary["tokens"]["2"])
        assert len(window) == 200 and window in runs["text"]
        assert "inside_quotes" in summary["top_units"]["l0"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    if not HAVE_MPL:
        pytest.skip("matplotlib is not installed: PNG checks skipped")
    assert f"heatmap-{keys[0]}-0.png" in pngs and f"heatmap-{keys[-1]}-2.png" in pngs
    assert "gradient-flow.png" in pngs
    assert ("saturation-l0.png" in pngs) == bool(gates)
    if name.startswith("lm"):
        assert "text-l0-inside_quotes.png" in pngs
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["pictures"] == [p for p in summary["pictures"] if p in pngs]


def _first_examples(prepared, n):
    x = next(iter(prepared.test_loader))[0].asnumpy()
    return [x[k] for k in range(n)]  # digits: every series has 8 rows, no padding


def test_without_matplotlib_one_line_says_how(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plots, "import_pyplot", lambda: None)
    out = tmp_path / "out"
    assert main(["inspect", "--model", str(runs["copy-rnn"]), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [line for line in err if "matplotlib" in line] and len(err) == 1
    assert "pip install" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "trace.npz"]


@pytest.mark.parametrize("args,message", [
    (["--model", "{tmp}/nothing"], "not a model directory"),
    (["--model", "{copy}", "--index", "16"], "--index 16 is out of range: the test set"),
    (["--model", "{copy}", "--index", "-1"], "--index -1 is out of range"),
    (["--model", "{copy}", "--unit", "8"], "--unit 8 is out of range"),
    (["--model", "{lm}", "--index", "100000"], "windows of 200 tokens"),
    (["--model", "{copy}", "--data", "{tmp}/x.csv"], "task copy generates its data"),
    (["--model", "{copy}", "--max-examples", "0"], "--max-examples must be positive"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, runs, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, copy=runs["copy-rnn"], lm=runs["lm-gru"]) for a in args]
    assert main(["inspect", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mxlstm: error: ") and message in err[0], err

"""``mxlstm inspect`` end to end on tiny runs of the series presets (LSTM-FCN): vowels
(12 channels, read as is) and uea GunPoint (univariate: z-normalised per series, 150 steps
averaged in windows of 2). The written arrays give back the model's own outputs."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.series_model import SeriesModel
from mxlstm.cli import main
from mxlstm.inspect import model_outputs, plots
from mxlstm.inspect.examples import load_examples
from mxlstm.inspect.trace import Trace

TINY = ["--set", "train.progress=false", "--set", "model.hidden_size=8", "--epochs", "1",
        "--set", "train.max_batches=2"]
# flags, window of steps (GunPoint: 150 steps, the preset's max_steps 128)
RUNS = {"vowels": (["--task", "vowels"], 1),
        "gunpoint": (["--task", "uea", "--set", "data.name=GunPoint"], 2)}
HAVE_MPL = plots.import_pyplot() is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect-series")
    for name, (flags, _) in RUNS.items():  # the presets, only smaller and shorter
        assert main(["train", "--out", str(root / name), *TINY, *flags]) == 0
    return root


@pytest.mark.parametrize("name", list(RUNS))
def test_inspect_a_series_model_run(name, runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["inspect", "--model", str(runs / name), "--index", "1", "3", "--out",
                 str(out), "--max-examples", "40"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["cell"] == "lstm" and printed["keys"] == ["l0", "r0"]
    stride = RUNS[name][1]
    arrays = np.load(out / "trace.npz", allow_pickle=False)
    assert int(arrays["stride"]) == stride
    ex = load_examples(runs / name)
    assert isinstance(ex.model, SeriesModel)
    x, _, lengths = ex.batch([1, 3])
    np.testing.assert_array_equal(arrays["valid_length"], -(-lengths // stride))
    # the arrays written are enough to recompute the model's outputs on those examples
    parts = {key: {p: arrays[f"{key}/{p}"] for p in "ifogch"} for key in ("l0", "r0")}
    tr = Trace("lstm", arrays["valid_length"], parts,
               np.concatenate([parts["l0"]["h"], parts["r0"]["h"]], axis=2),
               inputs=arrays["input"], stride=stride,
               side={k[len("side/"):]: arrays[k] for k in arrays.files  # each conv branch
                     if k.startswith("side/")})
    # the preset's second conv branch: GunPoint (150 steps) only, JapaneseVowels is short
    assert ("side/conv_fine_input" in arrays.files) == (name == "gunpoint")
    expected = ex.model(mx.nd.array(x), mx.nd.array(lengths)).asnumpy()
    np.testing.assert_allclose(model_outputs(ex.model, tr), expected, atol=1e-5, rtol=0)
    summary = json.loads((out / "summary.json").read_text())
    all_lengths = np.array([len(v) for v in ex.x[:40]])
    assert summary["steps"] == int((-(-all_lengths // stride)).sum()) and summary["stride"] \
        == stride
    assert set(summary["saturation"]["l0"]) == {"i", "f", "o"}
    channels = arrays["input"].shape[2]
    assert channels == (12 if name == "vowels" else 1)
    assert {"position", "input_0", f"input_{channels - 1}"} <= set(summary["top_units"]["r0"])
    if not HAVE_MPL:
        pytest.skip("matplotlib is not installed: PNG checks skipped")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"heatmap-l0-1.png", "heatmap-r0-3.png", "saturation-r0.png",
            "gradient-flow.png"} <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Deploy without MXNet: the standalone predictor in ``.venv-ort`` (onnxruntime + numpy, no
mxnet), in a fresh process, with only ``PREFIX.onnx`` and ``PREFIX-meta.json``, answers as
the MXNet predictor does.

``.venv-ort`` is created on first use (``python -m mxlstm.deploy.ort_venv``, from PyPI) and
cached; the test skips when it is absent and cannot be created, or without onnx /
onnxruntime in this environment (they write the ONNX files).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_predictor import probs

from mxlstm.data.sources import load_digits
from mxlstm.deploy.ort_venv import VENV, create_ort_venv, ort_python, ort_status
from mxlstm.deploy.predictor import Predictor
from mxlstm.deploy.ship import ship_predictor

pytestmark = pytest.mark.onnx  # `make test-onnx` runs these (-m onnx)
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_onnx import TEXTS, onnx_exported  # noqa: E402

CHILD = """
import importlib.util, json, sys
sys.path[:0] = [sys.argv[1]]
import predictor as P
jobs, out = json.loads(sys.argv[2]), {}
for name, job in jobs.items():
    p = P.Predictor(job["prefix"], backend=job["backend"])
    out[name] = p.predict(job["items"], top_k=job.get("top_k"))
out["mxnet_found"] = importlib.util.find_spec("mxnet") is not None
out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("mxnet", "mxlstm"))
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def ort_venv() -> Path:
    if ort_status() is not None:
        try:
            create_ort_venv()
        except (OSError, subprocess.CalledProcessError) as err:
            pytest.skip(f"{VENV} cannot be created ({err})")
    status = ort_status()
    if status is not None:
        pytest.skip(f"{VENV}: {status}")
    return ort_python()


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "deploy-runs"
    path.mkdir(exist_ok=True)
    return path


def test_predictor_without_mxnet_matches_the_mxnet_predictor(base, tmp_path, ort_venv):
    deploy = tmp_path / "deploy"  # what a user copies: the predictor files + 2 per model
    ship_predictor(deploy)
    digits = load_digits().sequences
    rng = np.random.RandomState(0)
    items = {"digits": [d[:n].tolist() for d, n in zip(digits, (8, 2, 5, 8, 1))],
             "text": TEXTS, "lm": ["she was", "it is a truth universally acknowledged"],
             # the vowels preset's LSTM-FCN (conv branch, batch norm), series of 7..29 steps
             "vowels-fcn": [rng.randn(n, 12).tolist() for n in (7, 29, 13)]}
    jobs, prefixes = {}, {}
    for name in items:
        prefixes[name] = onnx_exported(base, name)
        for suffix in (".onnx", "-int8.onnx", "-meta.json"):
            shutil.copy(str(prefixes[name]) + suffix, deploy / (name + suffix))
        jobs[name] = {"prefix": str(deploy / name), "backend": "onnxruntime",
                      "items": items[name], "top_k": 2}
    jobs["digits-int8"] = {**jobs["digits"], "backend": "onnxruntime-int8"}
    proc = subprocess.run([str(ort_venv), "-I", "-c", CHILD, str(deploy), json.dumps(jobs)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["mxnet_found"] is False and got["modules"] == []
    for name in ("digits", "text", "vowels-fcn"):
        reference = Predictor(prefixes[name])
        expected = reference.predict(items[name], top_k=2)
        assert np.abs(probs(got[name], reference.labels)
                      - probs(expected, reference.labels)).max() <= 1e-5
    lm = Predictor(prefixes["lm"]).predict(items["lm"], top_k=2)
    for a, b in zip(got["lm"], lm):
        assert [t["token"] for t in a["top_k"]] == [t["token"] for t in b["top_k"]]
        assert max(abs(x["probability"] - y["probability"])
                   for x, y in zip(a["top_k"], b["top_k"])) <= 1e-5
    int8 = Predictor(prefixes["digits"], backend="onnxruntime-int8")
    assert np.abs(probs(got["digits-int8"], int8.labels)
                  - probs(int8.predict(items["digits"], top_k=2), int8.labels)).max() <= 1e-5

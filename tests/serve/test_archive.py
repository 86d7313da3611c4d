"""``PREFIX.mar`` and its handler without a server: the archive's contents, the handler in a
fresh process that never imports mxlstm (fake MMS context, mixed good and bad requests in
one batch), and the one-line refusals when the extra or Java is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from serve_inputs import TEXTS, archived, digit_rows

from mxlstm.cli import main
from mxlstm.deploy.predictor import Predictor
from mxlstm.deploy.ship import STANDALONE_FILES
from mxlstm.serve import archive, needs


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "deploy-runs"


def test_archive_holds_export_predictor_handler_and_manifest(base):
    mar = archived(base, "digits")
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"] == {"modelName": "digits", "handler": "mxlstm_handler:handle"}
        assert manifest["runtime"] == "python"
        for name, source in STANDALONE_FILES.items():
            assert z.read(name) == source.read_bytes(), name
        assert z.read("mxlstm_handler.py") == archive.HANDLER_FILE.read_bytes()
        for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
            assert z.read("digits" + suffix) == Path(str(mar)[:-4] + suffix).read_bytes()
        assert json.loads(z.read("mxlstm-serve.json"))["backend"] == "mxnet"
        # the ONNX files its meta.json records go in too (an earlier test may have
        # exported them beside the shared prefix)
        record = json.loads(z.read("digits-meta.json")).get("onnx") or {}
    onnx = {r["file"] for r in (record, record.get("int8") or {}) if r.get("file")}
    assert names == {"MAR-INF/MANIFEST.json", "mxlstm_handler.py", "mxlstm-serve.json",
                     "digits-symbol.json", "digits-0000.params", "digits-meta.json",
                     *STANDALONE_FILES, *onnx}
    info = archive.read_archive(mar)
    assert info["name"] == "digits" and info["meta"]["kind"] == "sequence_classification"


CHILD = """
import base64, json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.append(sys.argv[2])
import mxlstm_handler as H
class Context:
    system_properties = {"model_dir": sys.argv[1]}
    def __init__(self, types): self.types, self.status, self.headers = types, {}, {}
    def get_all_request_header(self, idx): return {"body": {"content-type": self.types[idx]}}
    def set_response_content_type(self, idx, value): self.headers[idx] = value
    def set_response_status(self, code=200, phrase="", idx=0): self.status[idx] = (code, phrase)
rows = json.loads(sys.stdin.read())
assert H.handle(None, Context([])) is None
ctx = Context([r[1] for r in rows])
out = H.handle([{"body": bytearray(base64.b64decode(r[0]))} for r in rows], ctx)
print(json.dumps({"answers": [json.loads(a) for a in out], "status": ctx.status,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] == "mxlstm")}))
"""


def _run_handler(mar: Path, tmp_path: Path, requests: list[tuple[str | bytes, str]]) -> dict:
    """Answers of the unpacked archive's handler to ``(body, content type)`` requests,
    given as one MMS batch in a fresh ``python -I -S`` with only site-packages."""
    import base64

    requests = [(base64.b64encode(b if isinstance(b, bytes) else b.encode()).decode(), t)
                for b, t in requests]
    unpacked = tmp_path / mar.stem
    with zipfile.ZipFile(mar) as z:
        z.extractall(unpacked)
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(unpacked), site],
                          input=json.dumps(requests), capture_output=True, text=True,
                          timeout=120,
                          env={"OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_handler_answers_a_mixed_batch_alone_per_request(base, tmp_path):
    mar = archived(base, "digits")
    rows = digit_rows(3)
    good = [(json.dumps(r), "application/json") for r in rows]
    bad = [("not json", "application/json"), ("[[1, 2, 3]]", "application/json"),
           ('[[NaN, 1, 2, 3, 4, 5, 6, 7]]', "application/json"), ("", "application/json"),
           (b"\xff\xfe[1]", "application/json"),
           ('{"input": [[1,2,3,4,5,6,7,8]], "colour": 1}', "application/json"),
           ("x" * (2 << 20), "application/json")]
    several = (json.dumps({"inputs": rows, "top_k": 2}), "application/json")
    line = ("0,1,2,3,4,5,6,7", "text/plain")  # not 8 channels: refused in one line
    got = _run_handler(mar, tmp_path, [good[0], *bad, good[1], several, line, good[2]])
    assert got["modules"] == []  # the handler and the predictor never import mxlstm
    answers, status = got["answers"], {int(k): v for k, v in got["status"].items()}
    expected = Predictor(str(mar)[:-4]).predict(rows)
    for k, want in ((0, expected[0]), (8, expected[1]), (11, expected[2])):
        assert k not in status
        assert np.allclose(list(answers[k]["probabilities"].values()),
                           list(want["probabilities"].values()), atol=1e-6, rtol=0)
    assert [a["label"] for a in answers[9]["answers"]] == [a["label"] for a in expected]
    assert all(len(a["top_k"]) == 2 for a in answers[9]["answers"])
    for k in (1, 2, 3, 4, 5, 6, 7, 10):
        assert status[k][0] == (413 if k == 7 else 400), (k, answers[k])
        message = answers[k]["error"]
        assert message and "\n" not in message and len(message) <= 300, message
    assert "not JSON" in answers[1]["error"]
    assert "3 features per step, the model expects 8" in answers[2]["error"]
    assert "NaN" in answers[3]["error"] and "empty" in answers[4]["error"]
    assert "UTF-8" in answers[5]["error"] and "colour" in answers[6]["error"]
    assert "above the limit" in answers[7]["error"] and "channel" in answers[10]["error"]


def test_handler_reads_text_as_json_string_or_plain_text(base, tmp_path):
    mar = archived(base, "text")
    requests = [(json.dumps(TEXTS[0]), "application/json"), (TEXTS[1], "text/plain"),
                (json.dumps({"input": TEXTS[2], "top_k": 1}), "application/json"),
                ('""', "application/json"), ("   ", "text/plain")]
    got = _run_handler(mar, tmp_path, requests)
    expected = Predictor(str(mar)[:-4]).predict(TEXTS[:3])
    for k in range(3):
        assert got["answers"][k]["label"] == expected[k]["label"]
        assert abs(got["answers"][k]["probabilities"][expected[k]["label"]] -
                   expected[k]["probabilities"][expected[k]["label"]]) <= 1e-6
    assert len(got["answers"][2]["top_k"]) == 1
    assert got["answers"][3]["error"] == "empty text (no tokens)"
    assert got["answers"][4]["error"] == "empty request body"


def test_export_mar_on_the_command_line(base, tmp_path, capsys):
    from test_predictor import tiny_run

    archived(base, "digits")  # skips without model-archiver
    out = tmp_path / "exp" / "digits"
    assert main(["export", "--model", str(tiny_run(base, "digits")), "--out", str(out),
                 "--mar"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mar"] == f"{out}.mar" and archive.read_archive(result["mar"])


def test_bad_model_name_and_missing_files_are_one_line(tmp_path):
    pytest.importorskip("model_archiver")
    with pytest.raises(Exception, match="model name 'a b' must start"):
        archive.write_archive(tmp_path / "a b")
    with pytest.raises(Exception, match="missing exported file"):
        archive.write_archive(tmp_path / "gone")
    (tmp_path / "x.mar").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(needs.ServeError, match="not an mxlstm model archive"):
        archive.read_archive(tmp_path / "x.mar")


def test_without_the_extra_or_java_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("mms", "model_archiver")
                        else real(name, *a))
    mar = tmp_path / "m.mar"
    assert main(["serve", "--model", str(mar)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mxlstm: error: mxlstm serve needs Multi Model Server: pip install "
                   "'mxlstm[serve]' (multi-model-server==1.1.11 model-archiver==1.0.3)")
    assert main(["export", "--model", str(tmp_path), "--out", str(tmp_path / "e"),
                 "--mar"]) == 2  # the run is refused first; the archiver check below
    capsys.readouterr()
    with pytest.raises(needs.ServeError, match=r"^--mar needs model-archiver: pip install"):
        archive.write_archive(tmp_path / "e")
    monkeypatch.setattr(importlib.util, "find_spec",  # the extra there, Java not
                        lambda name, *a: object() if name in ("mms", "model_archiver")
                        else real(name, *a))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["serve", "--model", str(mar)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Java 8 or newer (java on PATH not found)" in err[0]

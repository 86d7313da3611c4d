"""``mxlstm serve`` over HTTP on 127.0.0.1: answers equal the in-process predictor's for a
classifier, a text model and an LM; every malformed request gets a 4xx with a one-line
message and the next good request is still answered right; server-side batching answers
concurrent mixed requests right; ``--stop`` and a killed parent leave no process behind.
Skipped without the [serve] extra or Java."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_inputs import (
    CONTEXTS,
    MXLSTM,
    REPO,
    TEXTS,
    Served,
    archived,
    digit_rows,
    marked,
    needs_server,
    wait_gone,
)

from mxlstm.deploy.predictor import Predictor
from mxlstm.serve.http import Client

needs_server()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "deploy-runs"


@pytest.fixture(scope="module")
def served(base, tmp_path_factory):
    archives = [archived(base, name) for name in ("digits", "text", "lm")]
    server = Served(archives, tmp_path_factory.mktemp("serve-run"))
    yield server
    server.stop()


def _post(url: str, body: str | bytes, content_type: str = "application/json"):
    client = Client(url.rsplit("/predictions", 1)[0], timeout=60)
    try:
        status, payload = client.request("POST", "/predictions/" + url.rsplit("/", 1)[1],
                                         body, content_type)
    finally:
        client.close()
    return status, json.loads(payload) if payload.strip() else None


def _probabilities(answer: dict) -> np.ndarray:
    return np.array(list(answer["probabilities"].values()))


def test_answers_equal_the_in_process_predictor(served, base):
    predictor = {name: Predictor(str(archived(base, name))[:-4]) for name in ("digits", "text",
                                                                             "lm")}
    for name, items in (("digits", digit_rows(4)), ("text", TEXTS)):
        expected = predictor[name].predict(items)
        for item, want in zip(items, expected):
            status, got = _post(served.url(name), json.dumps(item))
            assert status == 200, got
            assert got["label"] == want["label"]
            assert list(got["probabilities"]) == list(want["probabilities"])
            assert np.abs(_probabilities(got) - _probabilities(want)).max() <= 1e-6
        status, got = _post(served.url(name), json.dumps({"inputs": items}))
        assert status == 200 and len(got["answers"]) == len(items)
        assert max(np.abs(_probabilities(g) - _probabilities(w)).max()
                   for g, w in zip(got["answers"], expected)) <= 1e-6
    for context in CONTEXTS:
        want = predictor["lm"].predict_one(context, top_k=10)
        status, got = _post(served.url("lm"), context, "text/plain; charset=utf-8")
        assert status == 200 and got["next_token"] == want["next_token"]
        status, got = _post(served.url("lm"), json.dumps({"input": context, "top_k": 10}))
        assert [t["token"] for t in got["top_k"]] == [t["token"] for t in want["top_k"]]
        assert max(abs(g["probability"] - w["probability"])
                   for g, w in zip(got["top_k"], want["top_k"])) <= 1e-6


BAD = [  # (model, body, content type, status, words of the message)
    ("digits", "not json {", "application/json", 400, "not JSON"),
    ("digits", "[[1, 2, 3]]", "application/json", 400, "3 features per step, the model "
                                                       "expects 8"),
    ("digits", "[[NaN, 1, 2, 3, 4, 5, 6, 7]]", "application/json", 400, "NaN"),
    ("digits", '[[1e999, 1, 2, 3, 4, 5, 6, 7]]', "application/json", 400, "NaN or infinite"),
    ("digits", "[]", "application/json", 400, "expected rows (T, C)"),
    ("digits", '{"inputs": []}', "application/json", 400, "'inputs' must be a list"),
    ("digits", '{"input": [[0,0,0,0,0,0,0,0]], "top_k": 99}', "application/json", 400,
     "top_k must be between 1 and 10"),
    ("text", '""', "application/json", 400, "empty text (no tokens)"),
    ("text", "", "text/plain", 400, "empty request body"),
    ("text", b"\xff\xfe", "text/plain", 400, "not UTF-8"),
    ("digits", "[" + "0," * (1 << 20) + "0]", "application/json", 413, "above the limit"),
    ("lm", '{"input": 12}', "application/json", 400, "a text or a list of token ids"),
    ("digits", "[[0,0,5,13,9,1,0,0]]", "application/x-www-form-urlencoded", 400,
     "a form body"),
]


@pytest.mark.parametrize("model, body, content_type, status, words", BAD,
                         ids=[f"{b[0]}-{k}" for k, b in enumerate(BAD)])
def test_malformed_request_is_4xx_one_line_and_the_worker_stays_up(
        served, base, model, body, content_type, status, words):
    got_status, got = _post(served.url(model), body, content_type)
    assert got_status == status, got
    assert words in got["error"] and "\n" not in got["error"], got
    good = digit_rows(1)[0]
    want = Predictor(str(archived(base, "digits"))[:-4]).predict_one(good)
    ok, answer = _post(served.url("digits"), json.dumps(good))
    assert ok == 200 and np.abs(_probabilities(answer) - _probabilities(want)).max() <= 1e-6


def test_unknown_model_and_body_above_the_server_limit(served):
    status, got = _post(served.info["url"] + "/predictions/nosuchmodel", "[[1]]")
    assert status == 404 and got["message"] == "Model not found: nosuchmodel"
    status, got = _post(served.url("digits"), b"0" * (9 << 20))  # above --max-request-mb 8
    assert status == 413 and got is None  # the frontend refuses it before any worker
    assert _post(served.url("digits"), json.dumps(digit_rows(1)[0]))[0] == 200


def test_load_driver_counts_answers_wrong_answers_and_errors(served, base):
    from mxlstm.serve.load import drive, sample_input

    prefix = str(archived(base, "digits"))[:-4]
    predictor = Predictor(prefix)
    item = sample_input(predictor.meta)
    expected = json.loads(json.dumps(predictor.predict_one(item)))
    good = drive(served.url("digits"), json.dumps(item), expected, 40, 4, 60)
    assert (good["sent"], good["answered"], good["errors"], good["wrong"], good["lost"]) == \
        (40, 40, 0, 0, 0)
    assert 0 < good["p50_ms"] <= good["p90_ms"] <= good["p99_ms"]
    other = {**expected, "label": "not this one"}
    assert drive(served.url("digits"), json.dumps(item), other, 10, 2, 60)["wrong"] == 10
    assert drive(served.url("digits"), "[[1]]", expected, 10, 2, 60)["errors"] == 10


def test_generated_config_is_used_and_requests_write_no_log_lines(served):
    """MMS's own logging writes ~7 lines a request; the generated log4j2.xml none."""
    config = (served.run_dir / "config.properties").read_text().splitlines()
    assert {"async_logging=true", "metric_time_interval=3600",
            "decode_input_request=false"} <= set(config)
    assert (served.run_dir / "log4j2.xml").is_file()

    def lines() -> int:
        logs = [served.run_dir / "mms.out", *(served.run_dir / "logs").glob("*.log")]
        return sum(len(p.read_bytes().splitlines()) for p in logs)

    before, body = lines(), json.dumps(digit_rows(1)[0])
    assert all(_post(served.url("digits"), body)[0] == 200 for _ in range(30))
    assert lines() == before
    assert not (served.run_dir / "logs" / "access_log.log").exists()


def test_batching_answers_concurrent_mixed_requests_and_stop(served, base):
    """A second registration of the digits archive with batch_size 8 on the same server:
    32 concurrent requests, a quarter of them bad, each answered as if alone."""
    client = Client(served.info["management_url"], timeout=120)
    status, body = client.json("POST", "/models?url=digits.mar&model_name=digits8&"
                               "batch_size=8&max_batch_delay=200&initial_workers=1&"
                               "synchronous=true")
    assert status == 200, body
    rows = digit_rows(4)
    expected = Predictor(str(archived(base, "digits"))[:-4]).predict(rows)
    url = served.info["url"] + "/predictions/digits8"
    jobs = [(k, "[[1, 2]]" if k % 4 == 3 else json.dumps(rows[k % 4])) for k in range(32)]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda job: _post(url, job[1]), jobs))
    for (k, _), (status, got) in zip(jobs, results):
        if k % 4 == 3:
            assert status == 400 and "2 features per step" in got["error"]
        else:
            assert status == 200
            assert np.abs(_probabilities(got) - _probabilities(expected[k % 4])).max() <= 1e-6
    assert marked(served.marker)
    served.stop()  # mxlstm serve --stop
    assert served.proc.returncode == 0
    assert "mxlstm: server stopped" in served.proc.stderr.read()
    assert wait_gone(served.marker, 1) == []
    assert not (served.run_dir / "server.json").exists()


def test_killed_parent_leaves_no_process_and_backend_setting(base, tmp_path):
    """SIGKILL to ``mxlstm serve``: its watcher stops the server. With onnx and onnxruntime
    installed the server runs the archive's ONNX graph (``--backend onnxruntime``)."""
    flags, mar = [], archived(base, "digits")
    try:
        import onnxruntime  # noqa: F401
        from test_onnx import onnx_exported
    except ImportError:
        onnx_exported = None
    if onnx_exported is not None:
        from mxlstm.serve.archive import write_archive

        mar = write_archive(onnx_exported(base, "digits"))
        flags = ["--backend", "onnxruntime"]
    server = Served([mar], tmp_path / "run", *flags)
    try:
        rows = digit_rows(2)
        want = Predictor(str(mar)[:-4], backend="onnxruntime" if flags else "mxnet")
        for row, expected in zip(rows, want.predict(rows)):
            status, got = _post(server.url(mar.stem), json.dumps(row))
            assert status == 200
            assert np.abs(_probabilities(got) - _probabilities(expected)).max() <= 1e-6
        assert len(marked(server.marker)) >= 3  # launcher, java, worker(s)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        assert wait_gone(server.marker, 30) == []
    finally:
        server.stop()


def _mxnet_only_archive(base: Path, tmp: Path) -> Path:
    """An archive of the digits export without its ONNX graph (if it has one)."""
    from mxlstm.serve.archive import write_archive

    source, prefix = archived(base, "digits").with_suffix(""), tmp / "plain" / "digits"
    prefix.parent.mkdir()
    for suffix in ("-symbol.json", "-0000.params"):
        Path(f"{prefix}{suffix}").write_bytes(Path(f"{source}{suffix}").read_bytes())
    meta = json.loads(Path(f"{source}-meta.json").read_text())
    meta.pop("onnx", None)
    Path(f"{prefix}-meta.json").write_text(json.dumps(meta))
    return write_archive(prefix)


def test_cli_refusals_are_one_line(tmp_path, base):
    plain = _mxnet_only_archive(base, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*MXLSTM, "serve", *args], capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    for args, words in ((["--stop", "--run-dir", str(tmp_path)], "no server recorded"),
                        (["--model", str(tmp_path / "none.mar")], "no such model archive"),
                        (["--model", str(archived(base, "digits")), "--port", "40000"],
                         "takes ports 1 to 32766"),
                        (["--model", str(plain), "--backend", "onnxruntime", "--run-dir",
                          str(tmp_path)], "needs an ONNX graph"),
                        (["--model", str(archived(base, "digits")), "--max-batch-delay",
                          "5"], "give it with --batch-size")):
        proc = run(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("mxlstm: error: ") and words in lines[0], lines[0]

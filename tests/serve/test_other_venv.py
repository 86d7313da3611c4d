"""docs/deployment.md's "another machine" recipe, run as written: a venv with only mxnet,
numpy and multi-model-server (no mxlstm) serves a copied ``.mar`` with
``multi-model-server --start`` on 127.0.0.1, answers like the in-process predictor, and
``multi-model-server --stop`` ends it. Skipped unless ``MXLSTM_TEST_OTHER_VENV`` names
such a venv (``python3.11 -m venv V && V/bin/pip install mxnet==1.9.1 'numpy<1.24'
multi-model-server==1.1.11``); the test installs nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from serve_inputs import archived, digit_rows, marked, needs_server, wait_gone

from mxlstm.deploy.predictor import Predictor
from mxlstm.launch_os import WATCHER
from mxlstm.serve.http import Client
from mxlstm.serve.server import MARKER_ENV, free_port

needs_server()
VENV = os.environ.get("MXLSTM_TEST_OTHER_VENV")
if not VENV or not (Path(VENV) / "bin" / "multi-model-server").is_file():
    pytest.skip("MXLSTM_TEST_OTHER_VENV does not name a venv with multi-model-server",
                allow_module_level=True)


def _healthy(url: str, seconds: float = 180.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client = Client(url, timeout=2.0)
        try:
            status, body = client.json("GET", "/ping")
            if status == 200 and isinstance(body, dict) and body.get("status") == "Healthy":
                return True
        except OSError:
            pass
        finally:
            client.close()
        time.sleep(0.5)
    return False


def test_recipe_serves_a_copied_archive_without_mxlstm(tmp_path, base_runs):
    venv = Path(VENV)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import mxlstm"],
                           capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0, "the other venv must not have mxlstm"
    (tmp_path / "store").mkdir()
    (tmp_path / "tmp").mkdir()
    shutil.copyfile(archived(base_runs, "digits"), tmp_path / "store" / "digits.mar")
    port = free_port()
    management = free_port((port,))
    (tmp_path / "mms.properties").write_text(
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{management}\n"
        "decode_input_request=false\ndefault_workers_per_model=1\nmodel_store=store\n")
    marker = f"other-venv-{os.getpid()}"
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path / "tmp"), "TEMP": str(tmp_path / "tmp"),
           "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1", MARKER_ENV: marker}
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, f"{MARKER_ENV}={marker}"],
                               stdin=subprocess.PIPE, start_new_session=True)
    mms = [str(venv / "bin" / "multi-model-server")]
    try:
        with open(tmp_path / "mms.out", "wb") as out:  # the JVM keeps a pipe open: a file
            subprocess.run([*mms, "--start", "--mms-config", "mms.properties",
                            "--models", "digits=digits.mar", "--model-store", "store"],
                           cwd=tmp_path, env=env, check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=60, start_new_session=True)
        assert _healthy(f"http://127.0.0.1:{port}")
        rows = digit_rows(3)
        want = Predictor(str(archived(base_runs, "digits"))[:-4]).predict(rows)
        client = Client(f"http://127.0.0.1:{port}", timeout=120)
        try:
            for row, expected in zip(rows, want):
                status, payload = client.request("POST", "/predictions/digits",
                                                 json.dumps(row))
                got = json.loads(payload)
                assert status == 200, got
                assert got["label"] == expected["label"]
                diff = np.abs(np.array(list(got["probabilities"].values())) -
                              np.array(list(expected["probabilities"].values())))
                assert diff.max() <= 1e-6
        finally:
            client.close()
        stopped = subprocess.run([*mms, "--stop"], cwd=tmp_path, env=env, check=True,
                                 capture_output=True, text=True, timeout=60)
        assert "Model server stopped." in stopped.stdout
        assert wait_gone(marker, 60) == []
    finally:
        watcher.stdin.close()
        watcher.wait(timeout=60)
    assert marked(marker) == []


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "deploy-runs"

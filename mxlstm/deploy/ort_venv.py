"""``.venv-ort``: a virtual environment with onnxruntime and numpy and **no** mxnet.

It proves that the standalone predictor's ONNX Runtime backend needs nothing of MXNet
(``tests/deploy/test_ort_venv.py`` runs the predictor there in a fresh process). Created
on first use, cached, and not part of any install::

    python -m mxlstm.deploy.ort_venv        # or: make venv-ort
    # = python3.11 -m venv .venv-ort && .venv-ort/bin/pip install onnxruntime numpy

It takes a current onnxruntime and numpy from PyPI (MXNet's numpy<1.24 cap does not apply
there).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".venv-ort"
PACKAGES = ("onnxruntime", "numpy")


def ort_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ort_status(venv: Path = VENV) -> str | None:
    """None when the venv imports onnxruntime and numpy but not mxnet, else why not."""
    py = ort_python(venv)
    if not py.exists():
        return "not created"
    probe = ("import importlib.util, numpy, onnxruntime; "
             "assert importlib.util.find_spec('mxnet') is None, 'mxnet is installed'")
    try:
        done = subprocess.run([str(py), "-c", probe], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"broken ({err})"
    if done.returncode:
        return "broken: " + ((done.stderr.strip().splitlines() or ["?"])[-1])
    return None


def create_ort_venv(venv: Path = VENV, python: str = sys.executable) -> None:
    """``python -m venv VENV && VENV/bin/pip install onnxruntime numpy`` (no mxnet)."""
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    *PACKAGES], check=True)


def main() -> int:
    if ort_status() is None:
        print(f"{VENV}: ready")
        return 0
    create_ort_venv()
    status = ort_status()
    print(f"{VENV}: {status or 'ready'}")
    return 0 if status is None else 1


if __name__ == "__main__":
    sys.exit(main())

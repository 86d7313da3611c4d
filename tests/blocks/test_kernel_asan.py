"""The kernel under AddressSanitizer: random layers, shapes, lengths and product routes,
forward and backward, and the fused NLL, with every buffer access checked. (A short last
backward chunk once packed past its workspace: results stayed right, the heap did not.)
Skipped without a compiler or the compiler's libasan."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mxlstm.kernels import build

STRESS = textwrap.dedent('''
    import sys
    from pathlib import Path
    from mxlstm.kernels import build
    build.library_path = lambda: Path(sys.argv[1])
    import os
    import mxnet as mx, numpy as np
    from mxnet import autograd
    from mxlstm import GRU, LSTM, RNN, kernels
    assert kernels.status() is None, kernels.status()
    rng = np.random.RandomState(0)
    for it in range(int(sys.argv[2])):
        os.environ["MXLSTM_KERNEL_GEMM"] = ("auto", "packed", "blas")[it % 3]
        kind = (LSTM, GRU, RNN)[rng.randint(3)]
        n, t = int(rng.randint(1, 70)), int(rng.randint(1, 70))
        c, h = int(rng.randint(1, 80)), int(rng.randint(1, 70))
        if it % 2:  # backward in chunks of 1024 // n steps, the last one 1-3 steps long
            n, c, h = int(rng.choice([17, 20, 30, 33])), int(rng.randint(33, 80)), \
                int(rng.randint(33, 70))
            t = 1024 // n + int(rng.randint(1, 4))
        layer = kind(h, int(rng.randint(1, 3)), bidirectional=bool(rng.randint(2)),
                     fused=True, return_states=True)
        layer.initialize(mx.init.Uniform(0.3))
        x = mx.nd.array(rng.normal(size=(n, t, c)))
        lengths = mx.nd.array(rng.randint(0, t + 1, size=n))
        x.attach_grad()
        with autograd.record():
            out, states = layer(x, lengths)
            loss = (out * out).sum() + sum(s.sum() for s in states)
        loss.backward()
        logits = mx.nd.array(rng.normal(size=(n, int(rng.randint(1, 300)))))
        logits.attach_grad()
        with autograd.record():
            nll = mx.nd.mxlstm_softmax_nll(logits, mx.nd.array(rng.randint(0, 5, size=n)))
        nll.backward()
        mx.nd.waitall()
    print("ok")
''')


def libasan() -> str | None:
    cxx = build.compiler()
    if cxx is None:
        return None
    path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True,
                          text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(libasan() is None, reason="no C++ compiler with AddressSanitizer")
def test_random_layers_touch_only_their_buffers(tmp_path: Path):
    mx_dir = build.mxnet_dir()
    lib = tmp_path / "libmxlstm_asan.so"
    flags = [f for f in build.FLAGS if f != "-O3"] + ["-O1", "-g", "-fsanitize=address",
                                                      "-fno-omit-frame-pointer"]
    cmd = [build.compiler(), *flags, f"-I{mx_dir / 'include'}", f"-I{build.HERE}",
           *(str(build.HERE / unit) for unit in build.UNITS), str(mx_dir / "src" / "lib_api.cc"),
           "-o", str(lib), "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    script = tmp_path / "stress.py"
    script.write_text(STRESS)
    env = {**os.environ, "LD_PRELOAD": libasan(), "OMP_NUM_THREADS": "2",
           "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1"}
    proc = subprocess.run([sys.executable, str(script), str(lib), "90"], capture_output=True,
                          text=True, env=env, timeout=900)
    report = [ln for ln in proc.stderr.splitlines() if "AddressSanitizer" in ln or "#" in ln]
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), "\n".join(report[:12])

#!/usr/bin/env python
"""Max absolute error of every cell against the float64 numpy reference (tests/numpy_reference.py),
in float64 and float32, and of the fused path against the gate-level path.

    .venv/bin/python scripts/reference_errors.py
"""

import sys
from pathlib import Path

import mxnet as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy_reference as ref  # noqa: E402
from test_cells import CASES, make, randomize, reference_step, run_cell  # noqa: E402

from mxlstm import GRU, LSTM, RNN  # noqa: E402


def cell_errors() -> None:
    for cell_cls, options in CASES:
        row = []
        for dtype in ("float64", "float32"):
            rng = np.random.RandomState(0)
            cell = make(cell_cls, 32, 16, dtype=dtype, **options)
            params = {k: v.astype(dtype).astype(np.float64)
                      for k, v in randomize(cell, rng, dtype=dtype).items()}
            x = rng.normal(size=(8, 20, 16)).astype(dtype)
            states = [np.zeros(i["shape"], dtype) for i in cell.state_info(8)]
            out, _ = run_cell(cell, x, states)
            want, _ = ref.run_sequence(reference_step(cell_cls, options), x.astype(np.float64),
                                       [s.astype(np.float64) for s in states], p=params)
            row.append(np.abs(out - want).max() / max(1.0, np.abs(want).max()))
        name = cell_cls.__name__ + (str(options) if options else "")
        print(f"{name:60s} float64 {row[0]:.1e}  float32 {row[1]:.1e}")


def fused_errors() -> None:
    x = mx.nd.random.normal(shape=(16, 35, 32))
    for cls in (LSTM, GRU, RNN):
        for layers, bi in ((1, False), (2, True)):
            a = cls(64, layers, bidirectional=bi, fused=True)
            b = cls(64, layers, bidirectional=bi, fused=False)
            for layer in (a, b):
                layer.initialize(mx.init.Uniform(0.3))
                layer(x)
            pa, pb = a._collect_params_with_prefix(), b._collect_params_with_prefix()
            for k in pa:
                pb[k].set_data(pa[k].data())
            err = np.abs(a(x).asnumpy() - b(x).asnumpy()).max()
            print(f"fused vs cells {cls.__name__} layers={layers} bidirectional={bi}: {err:.1e}")


if __name__ == "__main__":
    mx.random.seed(0)
    cell_errors()
    fused_errors()

"""The kernel's packed matrix products against the wheel's OpenBLAS, one thread.

``python -m mxlstm.bench.gemm_ab [--repeats 15] [SHAPE ...]`` compiles ``gemm_ab.cc``
against ``mxlstm/kernels/gemm.h`` (the kernel's flags, in a temporary directory), runs it
with ``OMP_NUM_THREADS=1`` and prints, per shape, the median time and GFLOP/s of each
variant over interleaved repeats (BLAS, packed ...), so that one run's ratios are
comparable on a shared machine. SHAPE is ``M,N,K,nt`` (``C = A B'``, the per-step product
``h Wh'``: ``N x 4H`` weights ``K = H`` deep) or ``M,N,K,tn`` (``C = A' B``, the weight
gradient ``dWh = dG' h`` over ``K`` rows). Default: the classifier's and LM-medium's
per-step products and weight gradients (one backward chunk of 1,024 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mxlstm.kernels import build

DEFAULT_SHAPES = ("128,512,128,nt", "32,2600,650,nt", "512,128,1024,tn", "2600,650,1024,tn")


def compile_harness(directory: Path) -> Path:
    """The harness, compiled with the kernel's flags and linked as the kernel is (without
    ``-ffast-math``, so that it runs in the floating-point mode the kernel runs in)."""
    cxx = build.compiler()
    if cxx is None:
        raise SystemExit("gemm_ab: no C++ compiler (set CXX or install g++)")
    exe, obj = directory / "gemm_ab", directory / "gemm_ab.o"
    flags = [f for f in build.COMPILE_FLAGS if f != "-fPIC"]
    for cmd in ([cxx, *flags, f"-I{build.HERE}", "-c",
                 str(Path(__file__).with_name("gemm_ab.cc")), "-o", str(obj)],
                [cxx, "-fopenmp", str(obj), "-o", str(exe), "-ldl"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"gemm_ab: compiling failed: {proc.stderr.strip()[:300]}")
    return exe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlstm.bench.gemm_ab",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="*", default=list(DEFAULT_SHAPES),
                        help="M,N,K,nt|tn (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    blas = build.mxnet_dir() / "libopenblas.so.0"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="mxlstm-gemm-") as tmp:
        exe = compile_harness(Path(tmp))
        for shape in args.shapes:
            m, n, k, form = shape.split(",")
            proc = subprocess.run([str(exe), str(blas), str(args.repeats), m, n, k, form],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr.strip(), file=sys.stderr)
                return proc.returncode
            result = json.loads(proc.stdout)
            blas_s = result["variants"][0]["median_s"]
            cells = ", ".join(f"{v['name']} {v['gflops']:.1f} GFLOP/s "
                              f"({blas_s / v['median_s']:.2f}x)" for v in result["variants"])
            print(f"({m}x{k})·({k}x{n}) {form}: {cells}; "
                  f"max |diff| {result['max_abs_diff']:.2g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

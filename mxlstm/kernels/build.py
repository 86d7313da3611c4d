"""Compile the C++ kernel against the installed mxnet wheel, once, into a cache.

The library is built from ``ops.cc`` (+ ``recurrent.h``, ``cells.h``) and the wheel's own
``mxnet/src/lib_api.cc`` with the machine's C++ compiler (``$CXX``, else ``g++``/``c++``),
``-O3 -march=native -ffast-math -fopenmp``, each unit compiled on its own and linked
without ``-ffast-math`` (so that loading it leaves the process's floating-point mode as it
was). The cache key hashes the sources, the compiler's version,
the flags, the MXNet version and the CPU's feature flags, so a changed source, compiler or
machine builds anew. Builds go to a temporary name and are renamed into place (safe when
several processes build at once). Cache: ``$MXLSTM_KERNEL_CACHE``, else
``$XDG_CACHE_HOME/mxlstm/kernels`` (``~/.cache/mxlstm/kernels``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mxnet as mx

HERE = Path(__file__).resolve().parent
SOURCES = ("ops.cc", "recurrent.h", "cells.h", "gemm.h", "nll_op.cc", "nll.h")
UNITS = ("ops.cc", "nll_op.cc")  # the translation units; the headers are in SOURCES
# -fno-finite-math-only: NaN must propagate (a diverged run has to show a NaN loss)
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp", "-fPIC",
         "-shared", "-std=c++17")
COMPILE_FLAGS = tuple(f for f in FLAGS if f != "-shared")
# Linked without -ffast-math: GCC then links crtfastmath.o, whose constructor switches the
# whole process to flush-to-zero / denormals-are-zero when the library loads (numpy's
# arithmetic too, with a warning from numpy.finfo); the kernel's own code needs neither.
LINK_FLAGS = ("-shared", "-fPIC", "-fopenmp")
LIB_NAME = "libmxlstm_kernels.so"


class BuildError(RuntimeError):
    """The kernel cannot be built here; the message says why (one line)."""


def mxnet_dir() -> Path:
    """The installed ``mxnet`` package directory (headers, ``lib_api.cc``, OpenBLAS)."""
    return Path(mx.__file__).resolve().parent


def compiler() -> str | None:
    """The C++ compiler to use, or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir() -> Path:
    if os.environ.get("MXLSTM_KERNEL_CACHE"):
        return Path(os.environ["MXLSTM_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mxlstm" / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def build_key(cxx: str) -> str:
    """Hash of everything the built library depends on."""
    h = hashlib.sha256(b"mxlstm kernel build key")  # a cache key, not a file fingerprint
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    h.update((mxnet_dir() / "src" / "lib_api.cc").read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    for part in (version.stdout, " ".join(COMPILE_FLAGS), " ".join(LINK_FLAGS), mx.__version__,
                 _cpu_flags()):
        h.update(part.encode())
    return h.hexdigest()[:16]


def library_path() -> Path:
    """Path of the built library: from the cache, or compiled now (~10-30 s).

    Raises :class:`BuildError` when there is no compiler or the build fails.
    """
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler (set CXX or install g++)")
    mx_dir = mxnet_dir()
    lib_api = mx_dir / "src" / "lib_api.cc"
    if not (mx_dir / "include" / "mxnet" / "lib_api.h").exists() or not lib_api.exists():
        raise BuildError("the mxnet wheel lacks include/mxnet/lib_api.h or src/lib_api.cc")
    target = cache_dir() / build_key(cxx) / LIB_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix=".objects-", dir=target.parent) as objects:
            units = [*(HERE / unit for unit in UNITS), lib_api]
            for k, unit in enumerate(units):
                _run_compiler([cxx, *COMPILE_FLAGS, f"-I{mx_dir / 'include'}", f"-I{HERE}",
                               "-c", str(unit), "-o", os.path.join(objects, f"{k}.o")])
            _run_compiler([cxx, *LINK_FLAGS,
                           *(os.path.join(objects, f"{k}.o") for k in range(len(units))),
                           "-o", tmp, "-ldl"])
        os.replace(tmp, target)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BuildError(f"compiling the kernel failed: {err}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _run_compiler(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or [
            f"exit {proc.returncode}"]
        raise BuildError(f"compiling the kernel failed: {lines[0].strip()}")

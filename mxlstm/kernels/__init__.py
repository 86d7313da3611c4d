"""mxlstm's own CPU recurrent kernel (an MXNet extension library), loaded on first use.

The kernel (``ops.cc``) runs a whole LSTM/GRU/RNN layer, uni- or bidirectional, with exact
variable lengths: one input-projection product for all steps, one recurrent product per
step, vectorised gate math on OpenMP threads, and in backward one weight-gradient product
per weight over all steps. It reads the layer's own parameters (the fused layout), so
weights, checkpoints and exports do not change. :func:`status` builds (once, cached, see
:mod:`mxlstm.kernels.build`) and loads it; when that is impossible the layer runs MXNet's
``RNN`` operator and the INFO line says why.

Switches: ``MXLSTM_KERNEL=0`` never uses the kernel; :func:`standard_ops` turns it off
inside a ``with`` block (exports use it so symbol files keep the standard ``RNN`` op).
``MXLSTM_KERNEL_BLAS`` / ``MXLSTM_KERNEL_BLAS_SYMBOL`` choose the sgemm (default: the
OpenBLAS bundled with the mxnet wheel, ``cblas_sgemm``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from mxlstm.errors import ConfigError

OP_NAME = "mxlstm_rnn"
NLL_OP_NAME = "mxlstm_softmax_nll"
_lock = threading.Lock()
_state: dict = {"tried": False, "reason": None, "path": None}
_off = threading.local()


GEMM_CHOICES = ("auto", "blas", "packed")
SWITCHES = {"MXLSTM_KERNEL": ("0", "1"), "MXLSTM_KERNEL_GEMM": GEMM_CHOICES}


def check_switches() -> None:
    """Raise :class:`ConfigError` for a kernel switch set to an unknown value (checked by the
    CLI before anything runs, so a typo is one line, not a silently ignored setting)."""
    for name, choices in SWITCHES.items():
        value = os.environ.get(name)
        if value is not None and value not in choices:
            raise ConfigError(f"environment variable {name}={value!r}: expected one of "
                              + ", ".join(choices))


def _load() -> None:
    import mxnet as mx  # here, so that check_switches() does not load MXNet

    from mxlstm.kernels import build
    try:
        path = build.library_path()
        os.environ.setdefault("MXLSTM_KERNEL_BLAS", str(build.mxnet_dir() / "libopenblas.so.0"))
        mx.library.load(str(path), verbose=False)
        if not all(hasattr(mod, op) for mod in (mx.nd, mx.sym) for op in (OP_NAME, NLL_OP_NAME)):
            raise build.BuildError("the library loaded but registered no operator")
        _state["path"] = str(path)
    except build.BuildError as err:
        _state["reason"] = str(err)
    except mx.base.MXNetError as err:
        _state["reason"] = "loading the kernel failed: " + (str(err).strip().splitlines()
                                                            or ["unknown error"])[0]


def status() -> str | None:
    """None when the kernel is built, loaded and switched on; else why it is not."""
    check_switches()
    if os.environ.get("MXLSTM_KERNEL", "1") == "0":
        return "switched off (MXLSTM_KERNEL=0)"
    if getattr(_off, "depth", 0):
        return "standard MXNet operators requested (export)"
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            _load()
    return _state["reason"]


def library() -> str | None:
    """Path of the loaded library, or None."""
    return _state["path"]


@contextlib.contextmanager
def standard_ops() -> Iterator[None]:
    """Inside this block layers run MXNet's own ``RNN`` operator (for exported graphs)."""
    _off.depth = getattr(_off, "depth", 0) + 1
    try:
        yield
    finally:
        _off.depth -= 1

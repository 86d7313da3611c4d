"""The graph runners of the standalone predictor: MXNet or ONNX Runtime.

Standard library and numpy at import; ``mxnet`` is imported only by :class:`MxnetGraph`
and ``onnxruntime`` only by :class:`OrtGraph`, so a machine with ``pip install onnxruntime
numpy`` and no MXNet runs ``Predictor(PREFIX, backend="onnxruntime")``. Copy this file
beside ``predictor.py`` and ``predictor_inputs.py``.

=====================  ==========================================  =======================
backend                files read                                  checked against
=====================  ==========================================  =======================
``mxnet``              ``PREFIX-symbol.json``, ``PREFIX-0000.params``  ``fingerprint``
``onnxruntime``        ``PREFIX.onnx`` (``onnx.file`` of meta.json)    ``onnx.sha256``
``onnxruntime-int8``   ``PREFIX-int8.onnx`` (``onnx.int8.file``)       ``onnx.int8.sha256``
=====================  ==========================================  =======================

A runner takes numpy inputs in the order of ``meta.input.names`` and returns the outputs
in the order of ``meta.outputs`` as numpy arrays.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

try:  # inside the mxlstm package, or copied beside this file
    from .. import preprocess
    from .predictor_meta import ModelFilesError
except ImportError:
    import preprocess
    from predictor_meta import ModelFilesError

BACKENDS = ("mxnet", "onnxruntime", "onnxruntime-int8")


def sha256(path: str) -> str:
    """sha256 of a file (the one rule in :mod:`preprocess`)."""
    return preprocess.sha256_file(path)


def _probe_shapes(meta: dict) -> dict[str, tuple]:
    """Input shapes of a batch of one with two steps (or the fixed length)."""
    spec = meta["input"]
    steps = spec.get("fixed_length") or 2
    shapes = {"data": (1, steps) if spec["type"] == "tokens" else (1, steps, spec["features"]),
              "valid_length": (1,)}
    shapes.update({s["name"]: tuple(1 if d == "N" else d for d in s["shape"])
                   for s in spec["states"]})
    return {n: shapes[n] for n in spec["names"]}


class MxnetGraph:
    """``PREFIX-symbol.json`` + ``PREFIX-0000.params`` in an MXNet ``SymbolBlock``."""

    def __init__(self, prefix: str, meta: dict, ctx=None) -> None:
        import mxnet as mx

        self._mx = mx
        symbol, params = prefix + "-symbol.json", prefix + "-0000.params"
        missing = [f for f in (symbol, params) if not os.path.isfile(f)]
        if missing:
            raise ModelFilesError(f"missing exported file(s): {', '.join(missing)}")
        if meta["fingerprint"]["params_sha256"] != sha256(params):
            raise ModelFilesError(f"{prefix}-meta.json does not belong to {params} (params "
                                  f"sha256 differs from the fingerprint): a meta.json of "
                                  f"another model?")
        self.ctx = ctx or mx.cpu()
        self.input_names = meta["input"]["names"]
        self._buffers: dict[tuple, object] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.block = mx.gluon.SymbolBlock.imports(symbol, self.input_names, params,
                                                          ctx=self.ctx)
                _, outs, _ = mx.sym.load(symbol).infer_shape(**_probe_shapes(meta))
            except (mx.MXNetError, ValueError, AssertionError, KeyError, TypeError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise ModelFilesError(f"{prefix}: cannot load the graph ({first})") from None
        self.output_size = int(outs[0][-1])
        self.block.hybridize(static_alloc=True, static_shape=True)

    def forward(self, *arrays: np.ndarray) -> list[np.ndarray]:
        outs = self.block(*[self._on_device(k, a) for k, a in enumerate(arrays)])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return [o.asnumpy() for o in outs]

    def _on_device(self, position: int, a: np.ndarray):
        """``a`` copied into an input buffer kept per (input, shape, dtype): a copy into an
        existing NDArray costs less than half of a new ``mx.nd.array`` (~80 vs ~190 us)."""
        key = (position, a.shape, a.dtype.str)
        buffer = self._buffers.get(key)
        if buffer is None:
            if len(self._buffers) >= 64:
                self._buffers.clear()
            buffer = self._buffers[key] = self._mx.nd.empty(a.shape, ctx=self.ctx,
                                                            dtype=a.dtype)
        buffer._sync_copyfrom(a)  # waits until earlier readers of the buffer are done
        return buffer


class OrtGraph:
    """``PREFIX.onnx`` (or ``PREFIX-int8.onnx``) in an ONNX Runtime CPU session.

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    def __init__(self, prefix: str, meta: dict, int8: bool = False,
                 threads: int | None = None) -> None:
        record = meta.get("onnx") or {}
        if not record.get("exported"):
            why = f" ({record['refused']})" if record.get("refused") else ""
            raise ModelFilesError(f"{prefix}: no ONNX graph in this export{why}; export "
                                  f"with `mxlstm export ... --onnx`")
        if int8:
            record = record.get("int8") or {}
            if not record.get("file"):
                raise ModelFilesError(f"{prefix}: no int8 ONNX graph in this export; "
                                      f"export with `mxlstm export ... --onnx --int8`")
        path = os.path.join(os.path.dirname(prefix), record["file"])
        if not os.path.isfile(path):
            raise ModelFilesError(f"missing exported file: {path}")
        if record.get("sha256") != sha256(path):
            raise ModelFilesError(f"{prefix}-meta.json does not belong to {path} (its "
                                  f"sha256 differs from the one recorded)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelFilesError("the onnxruntime backend needs onnxruntime: pip install "
                                  "onnxruntime numpy") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            first = (str(err).strip().splitlines() or [repr(err)])[0][:300]
            raise ModelFilesError(f"{path}: cannot load the graph ({first})") from None
        self.path = path
        self.input_names = meta["input"]["names"]
        if [i.name for i in self.session.get_inputs()] != self.input_names:
            raise ModelFilesError(f"{path}: graph inputs differ from meta.json's "
                                  f"input.names {self.input_names}")
        self.output_names = [o["name"] for o in meta["outputs"]]
        self.threads = options.intra_op_num_threads
        probe = {n: np.ones(shape, self._dtype(meta, n))
                 for n, shape in _probe_shapes(meta).items()}
        self.output_size = int(self.forward(*probe.values())[0].shape[-1])

    @staticmethod
    def _dtype(meta: dict, name: str):
        return np.dtype(meta["input"]["dtype"]) if name == "data" else np.float32

    def forward(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(zip(self.input_names, arrays)))


def load_graph(backend: str, prefix: str, meta: dict, ctx=None, threads: int | None = None):
    """The runner of ``backend`` (one of :data:`BACKENDS`) for the export ``prefix``."""
    if backend == "mxnet":
        return MxnetGraph(prefix, meta, ctx)
    if backend in ("onnxruntime", "onnxruntime-int8"):
        return OrtGraph(prefix, meta, int8=backend.endswith("int8"), threads=threads)
    raise ModelFilesError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")

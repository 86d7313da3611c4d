"""Native ONNX recurrent graphs written from a trained mxlstm model's weights.

:func:`build_onnx` turns a :class:`~mxlstm.models.SequenceModel` or
:class:`~mxlstm.models.LanguageModel` into an ONNX ``ModelProto`` (opset :data:`OPSET`) with
one ONNX ``LSTM`` / ``GRU`` / ``RNN`` node per layer (both directions in one node) and the
lengths as ``sequence_lens``, so padded batches are exact without masks inside the
recurrence: ONNX Runtime stops each row at its length, and a reverse direction starts at
the row's last valid step.

Weight layout (MXNet's fused layout -> ONNX), per layer, direction ``d`` stacked on axis 0:

=====  =========================  ===========================  ==============================
cell   MXNet gates (``i2h``)      ONNX gates (``W``, ``R``)    notes
=====  =========================  ===========================  ==============================
LSTM   ``i, f, g, o``             ``i, o, f, c``               peepholes ``P = [p_i, p_o,
                                                               p_f]``
GRU    ``r, z, n``                ``z, r, h``                  ``linear_before_reset=1``
                                                               (MXNet: ``r * (U_n h + b_hn)``)
RNN    one block                  one block                    ``Tanh`` or ``Relu``
=====  =========================  ===========================  ==============================

``B`` is ``[i2h_bias, h2h_bias]`` in ONNX's gate order. ``Y (T, D, N, H)`` is transposed and
reshaped to ``(T, N, D*H)`` (forward then reverse) for the next layer; the final states
``(D, N, H)`` of the layers are concatenated to ``(L*D, N, H)`` in mxlstm's state order
``l0, r0, l1, ...``. Pooling ``last`` reads the top layer's ``Y_h`` (forward: the state at
step ``length - 1``; reverse: after reading the whole row), ``mean`` / ``max`` and per-step
heads use a length mask. Dropouts are identities at inference and are left out. The series
model's z-normalisation, window averaging and convolutional branch are
:mod:`mxlstm.deploy.onnx_series`.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from mxlstm.deploy import onnx_series
from mxlstm.kinds import KINDS

OPSET = 17
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
ELEM = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
        "float16": TensorProto.FLOAT16, "int32": TensorProto.INT32, "int64": TensorProto.INT64}
NEG = -1e30  # what mxlstm's max pooling puts at padded steps


class _Graph:
    """Nodes and initializers under construction; every value gets a unique name."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value, dtype=np.float32) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs):
        names = outputs if isinstance(outputs, list) else \
            [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if len(names) == 1 else names

    def pruned(self, outputs: list[str]) -> tuple[list, list]:
        """``(nodes, initializers)`` that the graph ``outputs`` need: ONNX Runtime runs
        every node it is given (a last layer's unused ``Y`` and its transposes cost ~20 us
        a call at batch 1). A recurrent node's unused ``Y`` output is left unnamed, so
        the kernel does not write it."""
        needed, nodes = set(outputs), []
        for node in reversed(self.nodes):
            if not needed.intersection(node.output):
                continue
            if node.op_type in ("LSTM", "GRU", "RNN") and node.output[0] not in needed:
                node.output[0] = ""  # optional output Y
            needed.update(i for i in node.input if i)
            nodes.append(node)
        return nodes[::-1], [t for t in self.initializers if t.name in needed]


def _numpy(param) -> np.ndarray:
    return param.data().asnumpy().astype(np.float32)


def _dense(g: _Graph, x: str, dense) -> str:
    """Gluon ``Dense`` (``y = x W^T + b``, any leading axes) with its activation."""
    y = g.op("MatMul", [x, g.const("W", _numpy(dense.weight).T)])
    if dense.bias is not None:
        y = g.op("Add", [y, g.const("b", _numpy(dense.bias))])
    act = dense.act._act_type if dense.act is not None else None
    if act in ("relu", "tanh", "sigmoid"):
        y = g.op({"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[act], [y])
    elif act is not None:
        raise ValueError(f"a Dense layer with activation {act!r} is not exported")
    return y


def _head(g: _Graph, x: str, head) -> str:
    """A ``Dense`` or a ``HybridSequential`` of Dense/Dropout layers."""
    from mxnet.gluon import nn

    blocks = list(head._children.values()) if isinstance(head, nn.HybridSequential) else [head]
    for block in blocks:
        if isinstance(block, nn.Dense):
            x = _dense(g, x, block)
        elif not isinstance(block, nn.Dropout):
            raise ValueError(f"a {type(block).__name__} in the head is not exported")
    return x


def layer_weights(encoder, layer: int) -> dict[str, np.ndarray]:
    """ONNX ``W (D, G*H, C)``, ``R (D, G*H, H)``, ``B (D, 2*G*H)`` and, for peephole LSTMs,
    ``P (D, 3*H)`` of ``layer``, in ONNX's gate order."""
    mode = encoder._table.cells[0].mode
    order, h = GATE_ORDER[mode], encoder.hidden_size
    out: dict[str, list] = {"W": [], "R": [], "B": [], "P": []}

    def gates(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[k * h:(k + 1) * h] for k in order], axis=0)

    for d in encoder.directions:
        key = f"{d}{layer}"
        p = {short: _numpy(getattr(encoder, f"{key}_{short}"))
             for short in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")}
        out["W"].append(gates(p["i2h_weight"]))
        out["R"].append(gates(p["h2h_weight"]))
        out["B"].append(np.concatenate([gates(p["i2h_bias"]), gates(p["h2h_bias"])]))
        cell = encoder._table.cells[layer * len(encoder.directions)
                                    + encoder.directions.index(d)]
        if getattr(cell, "peephole", False):
            out["P"].append(np.concatenate([_numpy(getattr(encoder, f"{key}_peep_{g}"))
                                            for g in ("i", "o", "f")]))
    return {k: np.stack(v) for k, v in out.items() if v}


def _recurrent(g: _Graph, x: str, encoder, lengths: str, states: list[str]):
    """Run the encoder on ``x (T, N, C)``: ``(out (T, N, D*H), [final (L*D, N, H)], top
    layer's finals [(D, N, H)])``."""
    mode = encoder._table.cells[0].mode
    dirs = len(encoder.directions)
    attrs = {"hidden_size": encoder.hidden_size,
             "direction": "bidirectional" if dirs == 2 else "forward"}
    if mode == "gru":
        attrs["linear_before_reset"] = 1
    if mode.startswith("rnn_"):
        attrs["activations"] = [mode[4:].capitalize()] * dirs
    finals: list[list[str]] = [[] for _ in range(2 if mode == "lstm" else 1)]
    for layer in range(encoder.num_layers):
        w = layer_weights(encoder, layer)
        begin = []
        for s in states:
            begin.append(g.op("Slice", [s, g.const("start", [layer * dirs], np.int64),
                                        g.const("end", [(layer + 1) * dirs], np.int64),
                                        g.const("axis", [0], np.int64)]))
        inputs = [x, g.const("W", w["W"]), g.const("R", w["R"]), g.const("B", w["B"]),
                  lengths, begin[0] if begin else ""]
        if mode == "lstm":
            inputs += [begin[1] if begin else ""]
            if "P" in w:
                inputs += [g.const("P", w["P"])]
        outs = g.op(ONNX_OP[mode], inputs, 1 + len(finals), **attrs)
        y, layer_finals = outs[0], outs[1:]
        for k, f in enumerate(layer_finals):
            finals[k].append(f)
        if dirs == 1:
            x = g.op("Squeeze", [y, g.const("axis", [1], np.int64)])
        else:
            y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, N, D, H)
            x = g.op("Reshape", [y, g.const("shape", [0, 0, -1], np.int64)])
    stacked = [f[0] if len(f) == 1 else g.op("Concat", f, axis=0) for f in finals]
    return x, stacked, [f[-1] for f in finals]


def _mask(g: _Graph, out: str, lengths_f: str) -> str:
    """Boolean ``(N, T, 1)``: step ``t < length[n]``, from ``out (N, T, F)``."""
    t = g.op("Gather", [g.op("Shape", [out]), g.const("one", 1, np.int64)], axis=0)
    steps = g.op("Cast", [g.op("Range", [g.const("zero", 0, np.int64), t,
                                         g.const("one", 1, np.int64)])], to=TensorProto.FLOAT)
    less = g.op("Less", [g.op("Unsqueeze", [steps, g.const("axis", [0], np.int64)]),
                         g.op("Unsqueeze", [lengths_f, g.const("axis", [1], np.int64)])])
    return g.op("Unsqueeze", [less, g.const("axis", [2], np.int64)])


def _pool(g: _Graph, out: str, how: str, lengths_f: str | None, top: str) -> str:
    """``out (N, T, D*H)`` -> ``(N, D*H)`` over each row's valid steps."""
    if how == "last":  # Y_h (D, N, H): forward at length-1, reverse after the whole row
        by_row = g.op("Transpose", [top], perm=[1, 0, 2])
        return g.op("Reshape", [by_row, g.const("shape", [0, -1], np.int64)])
    if lengths_f is None:
        return g.op("ReduceMean" if how == "mean" else "ReduceMax", [out], axes=[1],
                    keepdims=0)
    mask = _mask(g, out, lengths_f)
    if how == "mean":
        masked = g.op("Mul", [out, g.op("Cast", [mask], to=TensorProto.FLOAT)])
        total = g.op("ReduceSum", [masked, g.const("axis", [1], np.int64)], keepdims=0)
        return g.op("Div", [total, g.op("Unsqueeze", [lengths_f,
                                                      g.const("axis", [1], np.int64)])])
    kept = g.op("Where", [mask, out, g.const("neg", NEG)])
    return g.op("ReduceMax", [kept], axes=[1], keepdims=0)


def is_series(model) -> bool:
    """Whether ``model`` is the series model (its stages: :mod:`mxlstm.deploy.onnx_series`)."""
    from mxlstm.blocks.series_model import SeriesModel

    return isinstance(model, SeriesModel)


def model_body(g: _Graph, model, kind: str, streaming: bool, x: str, dtype: str,
               lengths_f: str | None, lengths: str | None, states: list[str]
               ) -> tuple[str, list[str]]:
    """The nodes of one trained model from its input ``x`` (of ``dtype``) and lengths
    (float ``(N,)`` and int32, or None): ``(main output, final states (L*D, N, H))``."""
    embedding = getattr(model, "embedding", None)
    if embedding is not None:
        ids = g.op("Cast", [x], to=TensorProto.INT64)
        x = g.op("Gather", [g.const("embedding", _numpy(embedding.weight)), ids], axis=0)
    elif dtype != "float32":
        x = g.op("Cast", [x], to=TensorProto.FLOAT)
    if getattr(model, "projection", None) is not None:
        x = _dense(g, x, model.projection)
    series = is_series(model)
    if series:  # z-norm and window averaging before the encoder (mxlstm.deploy.onnx_series)
        x, lengths_f, lengths, conv = onnx_series.series_input(g, model, x, lengths_f,
                                                               lengths)
    seq, finals, top = _recurrent(g, g.op("Transpose", [x], perm=[1, 0, 2]), model.encoder,
                                  lengths or "", states)
    out = g.op("Transpose", [seq], perm=[1, 0, 2])  # (N, T, D*H)
    if KINDS[kind].answer == "tokens":  # a language model
        main = _head(g, out, model.decoder)
    elif streaming:
        main = _head(g, out, model.head)
    elif model.per_step:
        if lengths_f is not None:  # mxlstm zeroes the encoder's output past each length
            mask = g.op("Cast", [_mask(g, out, lengths_f)], to=TensorProto.FLOAT)
            out = g.op("Mul", [out, mask])
        main = _head(g, out, model.head)
    elif series:
        pooled = _pool(g, out, model.pooling, lengths_f, top[0])
        main = onnx_series.series_output(g, model, conv, pooled, _head)
    else:
        main = _head(g, _pool(g, out, model.pooling, lengths_f, top[0]), model.head)
    return main, finals


def is_ensemble(model) -> bool:
    """Whether ``model`` is a seed ensemble (:mod:`mxlstm.deploy.onnx_ensemble`)."""
    from mxlstm.ensemble import EnsembleModel

    return isinstance(model, EnsembleModel)


def build_onnx(model, kind: str, streaming: bool, spec: dict, output_names: list[str],
               check_states: bool = False):
    """ONNX ``ModelProto`` of a trained model.

    ``spec`` is the export's ``input`` record (``names``, ``type``, ``dtype``, ``features``,
    ``states``); the graph takes the same inputs as the MXNet export: ``data (N, T, C)`` or
    ids ``(N, T)``, ``valid_length (N,)`` float (sequence models), states ``(L*D, N, H)``
    (language models and streaming). Outputs are named ``output_names`` (main output, then
    the new states). ``check_states``: sequence models also output their final states as
    ``final_state_h`` (and ``final_state_c``), for verification.
    """
    g = _Graph()
    names = spec["names"]
    tokens = spec["type"] == "tokens"
    data_shape = ["N", "T"] + ([] if tokens else [spec["features"]])
    inputs = [helper.make_tensor_value_info("data", ELEM[spec["dtype"]], data_shape)]
    lengths_f = lengths = None
    if "valid_length" in names:
        inputs.append(helper.make_tensor_value_info("valid_length", TensorProto.FLOAT, ["N"]))
        lengths_f = "valid_length"
        lengths = g.op("Cast", ["valid_length"], to=TensorProto.INT32)
    states = [s["name"] for s in spec["states"]]
    for s in spec["states"]:
        inputs.append(helper.make_tensor_value_info(s["name"], TensorProto.FLOAT, s["shape"]))
    if [i.name for i in inputs] != names:
        raise ValueError(f"cannot build graph inputs {names}")

    if is_ensemble(model):
        from mxlstm.deploy.onnx_ensemble import ensemble_body

        main, finals = ensemble_body(g, model, kind, "data", spec["dtype"], lengths_f, lengths)
    else:
        main, finals = model_body(g, model, kind, streaming, "data", spec["dtype"], lengths_f,
                                  lengths, states)
    results = [main] + (finals if states else [])
    if len(results) != len(output_names):
        raise ValueError(f"the graph has {len(results)} outputs, the export {output_names}")
    extra = []
    if check_states and not states:
        extra = [f"final_state_{k}" for k in "hc"[:len(finals)]]
        results += finals
    per_step = KINDS[kind].answer == "tokens" or streaming or getattr(model, "per_step", False)
    shapes = [["N", "T", "K"] if per_step else ["N", "K"]]
    shapes += [s["shape"] for s in spec["states"]] or [["LD", "N", "H"]] * len(extra)
    outputs = []
    for value, name, shape in zip(results, list(output_names) + extra, shapes):
        g.op("Identity", [value], [name])
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    nodes, initializers = g.pruned([o.name for o in outputs])
    graph = helper.make_graph(nodes, "mxlstm", inputs, outputs, initializers)
    proto = helper.make_model(graph, producer_name="mxlstm",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8  # onnxruntime 1.15 reads IR <= 9; onnx 1.14 writes 9
    return proto

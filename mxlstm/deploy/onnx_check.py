"""The export-time check of an ONNX graph against the trained mxlstm model.

Batches (:func:`check_batches`): for graphs with ``valid_length``, the first rows of the
run's test set, a random batch of another size and length and a batch of one, each with
random lengths (one row full, one of length 1) and **random values in the padding**
(random ids for text), so a graph that reads past a row's end cannot pass; for stateful
graphs (language models, streaming), random inputs and random begin states; for
fixed-length graphs, random rows of exactly ``T`` steps.

References: the trained model itself (``model(x, valid_length)``; language models
``model(ids, states)``; streaming: the exported stateful block), and for the final states
of sequence models an mxlstm :class:`~mxlstm.recurrent.RecurrentLayer` sharing the trained
parameters with ``return_states=True`` (its exact cells path with lengths).
"""

from __future__ import annotations

import numpy as np

from mxlstm.kinds import KINDS

STATE_CHECK = ("final_state_h", "final_state_c")


def session(model: bytes, threads: int = 1):
    """An ONNX Runtime CPU session on serialized ``model`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(sess, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    return dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {n: arrays[n] for n in names})))


def _random(spec: dict, n: int, t: int, rng: np.random.RandomState) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if spec["type"] == "tokens":
        return rng.randint(0, spec["vocab_size"], (n, t)).astype(dtype)
    return (1.5 * rng.randn(n, t, spec["features"])).astype(dtype)


def _lengths(n: int, t: int, rng: np.random.RandomState) -> np.ndarray:
    lengths = rng.randint(1, t + 1, n)
    lengths[0] = t
    if n > 2:
        lengths[1] = 1
    return lengths.astype(np.float32)


def check_batches(spec: dict, first: np.ndarray | None = None, seed: int = 0
                  ) -> list[dict[str, np.ndarray]]:
    """Input dicts for the check (see the module docstring); ``first``: real rows
    ``(N, T, ...)`` to start from (their padding is overwritten by random values)."""
    rng = np.random.RandomState(seed)
    names = spec["names"]
    if spec["states"]:
        sizes = [(2, 6), (5, 11), (1, 3)]
    elif "valid_length" in names:
        t = first.shape[1] if first is not None else 9
        sizes = [(len(first) if first is not None else 6, t), (7, t + 4), (1, t)]
    else:
        t = spec.get("fixed_length") or spec.get("sequence_length") or 9
        sizes = [(1, t), (6, t)]
    batches = []
    for k, (n, t) in enumerate(sizes):
        x = _random(spec, n, t, rng)
        arrays = {"data": x}
        if "valid_length" in names:
            lengths = _lengths(n, t, rng)
            if k == 0 and first is not None:
                x[:] = first.astype(x.dtype)
                lengths[2:] = rng.randint(1, t + 1, max(0, n - 2))
                noise = _random(spec, n, t, rng)
                pad = np.arange(t)[None, :] >= lengths[:, None]
                x[pad] = noise[pad]
            arrays["valid_length"] = lengths
        for s in spec["states"]:
            shape = [n if d == "N" else d for d in s["shape"]]
            arrays[s["name"]] = (0.5 * rng.randn(*shape)).astype(np.float32)
        batches.append(arrays)
    return batches


def _reference(prepared, cfg, meta: dict, arrays: dict) -> tuple[list, list]:
    """``(outputs, final states)`` of the trained model as numpy arrays."""
    import mxnet as mx

    from mxlstm.deploy.export import build_graph, flat

    model, kind = prepared.model, meta["kind"]
    nd = {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()}
    states = [nd[s["name"]] for s in meta["input"]["states"]]
    if KINDS[kind].answer == "tokens":  # a language model
        logits, new = model(nd["data"], states)
        return [logits.asnumpy()], [s.asnumpy() for s in new]
    if meta.get("streaming"):
        block = build_graph(prepared, True)[0]
        out = [o.asnumpy() for o in flat(block(nd["data"], *states))]
        return out[:1], out[1:]
    x = nd["data"]
    lengths = nd.get("valid_length", mx.nd.full((x.shape[0],), x.shape[1]))
    outputs = [model(x, lengths).asnumpy()]
    if not hasattr(model, "encoder"):  # a seed ensemble: no states of its own
        return outputs, []
    trained = model.encoder
    encoder = trained.variant(return_states=True, fused="auto")
    prepare = getattr(model, "encoder_input", None)
    if prepare is not None:  # the series model: z-norm, window averaging
        x, lengths = prepare(mx.nd, x, lengths)
    for stage in () if prepare is not None else (model.embedding, model.projection):
        if stage is not None:
            x = stage(x)
    _, finals = encoder(x, lengths)
    return outputs, [f.asnumpy() for f in finals]


def _diff(a: np.ndarray, b: np.ndarray | None) -> float:
    if b is None or a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# float32 rounding grows with the values: a trained LM's logits reach +-20 (its 10k-way
# decoder after two layers), where ONNX Runtime's and MXNet's summation orders differ by a
# few ulp (~1e-5). A value passes when |onnx - mxlstm| <= TOLERANCE + RTOL * |mxlstm|.
RTOL = 1e-6


def excess(a: np.ndarray, b: np.ndarray | None) -> float:
    """The largest ``|a - b| - RTOL * |a|`` (``a`` the reference): compared with the
    absolute tolerance, this is ``numpy.allclose(b, a, rtol=RTOL, atol=tolerance)``."""
    if b is None or a.shape != b.shape:
        return float("inf")
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.max(np.abs(a - b) - RTOL * np.abs(a)))


def check_model(prepared, cfg, meta: dict, checked: bytes, deployed: bytes) -> dict:
    """Run ``checked`` (the graph with its final states as extra outputs for sequence
    models) and ``deployed`` (the file to write) in ONNX Runtime on :func:`check_batches`
    and compare with the trained model: ``{max_abs_diff, states_max_abs_diff,
    max_excess (see :func:`excess`), batches, against}``."""
    import mxnet as mx

    spec = meta["input"]
    first = None
    if "valid_length" in spec["names"]:
        batch = next(iter(prepared.test_loader))
        first = batch[0][:8].astype("float32").asnumpy() if isinstance(batch[0], mx.nd.NDArray) \
            else None
    batches = check_batches(spec, first)
    out_names = [o["name"] for o in meta["outputs"]]
    sessions = [session(checked), session(deployed)]
    worst, worst_states, worst_excess = 0.0, 0.0, -float("inf")
    for arrays in batches:
        outputs, finals = _reference(prepared, cfg, meta, arrays)
        for k, sess in enumerate(sessions):
            got = run(sess, arrays)
            worst = max(worst, _diff(outputs[0], got.get(out_names[0])))
            worst_excess = max(worst_excess, excess(outputs[0], got.get(out_names[0])))
            names = out_names[1:] or (list(STATE_CHECK[:len(finals)]) if k == 0 else [])
            for name, value in zip(names, finals):
                worst_states = max(worst_states, _diff(value, got.get(name)))
                worst_excess = max(worst_excess, excess(value, got.get(name)))
    checked = "valid_length" not in spec["names"] or hasattr(prepared.model, "encoder")
    return {"max_abs_diff": worst, "states_max_abs_diff": worst_states if checked else None,
            "max_excess": worst_excess, "rtol": RTOL,
            "batches": [list(a["data"].shape[:2]) for a in batches],
            "against": "the trained mxlstm model; padded steps hold random values"}


def compare_sessions(fp32: bytes, int8: bytes, meta: dict,
                     batches: list[dict[str, np.ndarray]] | None = None) -> dict:
    """How far the int8 graph moves the main output on ``batches`` (default: random check
    batches): ``{max_abs_diff, top1_agreement}`` (the share of rows, or steps, whose arg
    max is unchanged; None for regression)."""
    spec = meta["input"]
    batches = check_batches(spec, None, seed=1) if batches is None else batches
    a, b = session(fp32), session(int8)
    name = meta["outputs"][0]["name"]
    diffs, same, total = [], 0, 0
    for arrays in batches:
        x, y = run(a, arrays)[name], run(b, arrays)[name]
        diffs.append(_diff(x, y))
        if KINDS[meta["kind"]].answer != "values":  # not a regression
            same += int((x.argmax(-1) == y.argmax(-1)).sum())
            total += x[..., 0].size
    return {"max_abs_diff": max(diffs),
            "top1_agreement": round(same / total, 4) if total else None,
            "batches": [list(a["data"].shape[:2]) for a in batches]}

"""Export a trained model directory to MXNet's deployable files plus a sidecar.

``export_model(DIR, PREFIX)`` writes::

    PREFIX-symbol.json   graph (HybridBlock.export; inputs renamed to data, valid_length,
                         state_h, state_c)
    PREFIX-0000.params   weights
    PREFIX-meta.json     what export forgets: input spec, preprocessing (normalisation,
                         inlined vocabulary, tokenizer rule), labels, outputs, versions,
                         and the sha256 of the params file (see docs/deployment.md)

and beside them the standalone predictor with the preprocessing rules it shares with
training (:mod:`mxlstm.deploy.ship`).

=========================  ==========================================  ========================
graph                      inputs (in order)                           outputs
=========================  ==========================================  ========================
sequence model             ``data (N, T, C)`` or ids ``(N, T)``,       ``(N, K)``, or
                           ``valid_length (N,)``                       ``(N, T, K)`` per step
fixed-length model         ``data`` with exactly ``T`` steps a row     as above
(``fixed_length=True``)
streaming sequence model   ``data``, ``state_h (L, N, H)``,            per-step ``(N, T, K)``,
                           ``state_c (L, N, H)`` (LSTM)                new states
language model             ids ``(N, T)``, ``state_h``, ``state_c``    ``(N, T, V)``, states
=========================  ==========================================  ========================

Every export is verified before it is kept: the files are reloaded with
``gluon.SymbolBlock.imports`` and compared with the live model on a test batch and on a
random batch of another size and length (max abs diff <= 1e-5).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import HybridBlock

from mxlstm import __version__
from mxlstm.deploy.graphs import data_length, fixed_length_graph, stateful_graph
from mxlstm.deploy.predictor_meta import FORMAT, FORMAT_VERSION
from mxlstm.deploy.ship import ship_predictor
from mxlstm.errors import ModelFileError
from mxlstm.kernels import standard_ops
from mxlstm.preprocess import CHAR_RULE, WORD_RULE, sha256_file
from mxlstm.tasks.spec import InputSpec, TaskSpec

log = logging.getLogger(__name__)
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------- graphs
def _state_names(count: int) -> list[str]:
    return ["state_h", "state_c"][:count] if count <= 2 else [f"state{k}" for k in range(count)]


def fixed_length_refusal(prepared, streaming: bool) -> tuple[int | None, str | None]:
    """``(T, None)`` when a graph without ``valid_length`` is exact for this run, else
    ``(None, why not)``."""
    if prepared.spec.stateful or streaming:
        return None, ("language models and --streaming exports take no lengths already; "
                      "--fixed-length is for whole-sequence models")
    length, low, high = data_length(prepared)
    if length is None:
        return None, (f"the run's sequences have different lengths ({low} to {high} steps), "
                      f"so the graph needs valid_length")
    refusal = getattr(prepared.model, "export_refusal", None)  # ensembles
    if refusal:
        return None, refusal
    return length, None


def build_graph(prepared, streaming: bool,
                fixed_length: int | None = None) -> tuple[HybridBlock, list, list]:
    """The block to export, its input names and its state specs ``{name, shape}``.

    ``fixed_length=T``: the model's fixed-length form, whose only input is ``data`` with
    ``T`` steps per row; its encoder runs one fused op per layer and direction where the
    fused operator is exact (else the trained gate-level path).
    """
    model, stateful = prepared.model, prepared.spec.stateful
    if fixed_length:
        block = fixed_length_graph(model, fixed_length)
        block.hybridize(static_alloc=True)
        return block, ["data"], []
    if streaming and not stateful:
        reason = model.streaming_refusal()
        if reason:
            raise ModelFileError(f"cannot export for streaming: {reason}")
    elif not stateful:
        return model, ["data", "valid_length"], []
    block = stateful_graph(model)
    infos = block.encoder.state_info(0)
    states = [{"name": name, "shape": ["N" if d == 0 else int(d) for d in info["shape"]]}
              for name, info in zip(_state_names(len(infos)), infos)]
    block.hybridize(static_alloc=True)
    return block, ["data"] + [s["name"] for s in states], states


# ----------------------------------------------------------------------------- samples
def _states(states: list[dict], n: int, rng: np.random.RandomState | None) -> list:
    shapes = [[n if d == "N" else d for d in s["shape"]] for s in states]
    if rng is None:
        return [mx.nd.zeros(shape) for shape in shapes]
    return [mx.nd.array(0.5 * rng.randn(*shape)) for shape in shapes]


def sample_inputs(prepared, spec: InputSpec, states: list[dict],
                  fixed_length: int | None = None) -> tuple[list, list]:
    """Two flat input lists: the first test batch (a few rows, zero states) and a random
    batch of another size and length (random lengths, random states); with
    ``fixed_length``, both have that length and there is no ``valid_length``."""
    rng = np.random.RandomState(0)
    batch = [b.as_in_context(mx.cpu()) for b in next(iter(prepared.test_loader))]
    x = batch[0]
    lengths = batch[2] if len(batch) > 2 else mx.nd.full((x.shape[0],), x.shape[1])
    n = min(4, x.shape[0]) if states else min(8, x.shape[0])
    if states and spec.lengths:  # streaming: one sequence, its own length
        n = 1
    t = int(lengths[:n].max().asscalar())
    first = [x[:n, :t]]
    n2, t2 = n + 3, fixed_length or t + 4
    if spec.tokens:
        x2 = mx.nd.array(rng.randint(0, spec.vocab_size, (n2, t2)), dtype=x.dtype)
    else:
        x2 = mx.nd.array(rng.randn(n2, t2, x.shape[2]), dtype=x.dtype)
    if states:
        return first + _states(states, n, None), [x2] + _states(states, n2, rng)
    if fixed_length:
        return first, [x2]
    lengths2 = rng.randint(1, t2 + 1, n2)
    lengths2[0] = t2
    return first + [lengths[:n]], [x2, mx.nd.array(lengths2)]


def flat(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def max_abs_diff(a: list, b: list) -> float:
    """Largest absolute difference between two lists of NDArrays of equal shapes."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return float("inf")
    return max(float(np.max(np.abs(x.asnumpy() - y.asnumpy()))) for x, y in zip(a, b))


def _stream_check(model: HybridBlock, block: HybridBlock, first: list) -> float:
    """Feed the first sample in two chunks through the streaming block; compare the last
    step (or every step, for per-step models) with one full pass of the trained model."""
    x, states = first[0], first[1:]
    t = x.shape[1]
    full = model(x, mx.nd.full((x.shape[0],), t))
    cut = max(1, t // 2)
    outs = []
    for chunk in (x[:, :cut], x[:, cut:]) if t > 1 else (x,):
        out, *states = flat(block(chunk, *states))
        outs.append(out)
    streamed = mx.nd.concat(*outs, dim=1)
    if not model.per_step:
        streamed = streamed[:, -1]
    return max_abs_diff([full], [streamed])


# ----------------------------------------------------------------------------- export
def rename_inputs(symbol_file: Path, names: list[str]) -> None:
    """``HybridBlock.export`` names inputs ``data0, data1, ...``: give them our names."""
    graph = json.loads(symbol_file.read_text())
    mapping = {f"data{k}": name for k, name in enumerate(names)} if len(names) > 1 else {}
    for node in graph["nodes"]:
        if node["op"] == "null" and node["name"] in mapping:
            node["name"] = mapping[node["name"]]
    symbol_file.write_text(json.dumps(graph, indent=2))


def fold_packed_weights(symbol_file: Path, params_file: Path, input_names: list[str]) -> int:
    """Replace each ``_rnn_param_concat`` that reads parameters only by a parameter holding
    its value, and rewrite both files; returns how many were folded.

    The fused RNN operator takes its weights as one flat vector that the training graph
    packs from the per-gate matrices at every call (~0.7 ms on CPU for a 128-unit layer);
    an inference graph can pack them once. The round-trip check verifies the result.
    """
    graph = json.loads(symbol_file.read_text())
    nodes = graph["nodes"]

    def reads_params_only(i: int) -> bool:
        node = nodes[i]
        if node["op"] == "null":
            return node["name"] not in input_names
        return all(reads_params_only(j) for j, *_ in node["inputs"])

    targets = [i for i, n in enumerate(nodes)
               if n["op"] == "_rnn_param_concat" and reads_params_only(i)]
    if not targets:
        return 0
    values = {k.split(":", 1)[1]: v for k, v in mx.nd.load(str(params_file)).items()}
    internals = mx.sym.load(str(symbol_file)).get_internals()
    verbose = os.environ.get("MXNET_SUBGRAPH_VERBOSE")
    os.environ["MXNET_SUBGRAPH_VERBOSE"] = "0"  # no "Subgraph backend ..." line per eval
    try:
        for i in targets:
            name = nodes[i]["name"]
            part = internals[name + "_output"]
            values[name] = part.eval(ctx=mx.cpu(), **{a: values[a]
                                                     for a in part.list_arguments()})[0]
            nodes[i] = {"op": "null", "name": name, "inputs": []}
    finally:
        if verbose is None:
            os.environ.pop("MXNET_SUBGRAPH_VERBOSE")
        else:
            os.environ["MXNET_SUBGRAPH_VERBOSE"] = verbose
    graph["arg_nodes"] = [i for i, n in enumerate(nodes) if n["op"] == "null"]
    sym = mx.sym.load_json(json.dumps(graph))  # drops the now unused nodes
    kept = {f"arg:{a}": values[a] for a in sym.list_arguments() if a not in input_names}
    kept.update({f"aux:{a}": values[a] for a in sym.list_auxiliary_states()})
    sym.save(str(symbol_file))
    mx.nd.save(str(params_file), kept)
    return len(targets)


def describe(task: TaskSpec, cfg, input_names: list[str], states: list[dict],
             streaming: bool, per_step: bool, fixed_length: int | None = None,
             series_lengths: list[int] | None = None) -> dict:
    """The sidecar ``PREFIX-meta.json`` (without fingerprint and verification);
    ``series_lengths``: ``[shortest, longest]`` of the run's evaluation series."""
    spec = task.input
    tokens = spec.tokens
    vocab = task.idx_to_token
    norm = task.normalization
    pad_id = spec.pad_id if spec.pad_id is not None else \
        (vocab.index("<pad>") if vocab else None)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "task": task.task, "kind": task.kind.name, "streaming": streaming,
        "label_names": list(task.label_names),
        "input": {
            "names": input_names, "type": spec.type, "layout": spec.layout,
            "dtype": spec.dtype, "features": None if tokens else spec.channels,
            "vocab_size": spec.vocab_size, "lengths": "valid_length" in input_names,
            "max_train_length": None if tokens else spec.max_length,
            "sequence_length": task.sequence_length, "fixed_length": fixed_length,
            "series_lengths": None if tokens else series_lengths,
            "states": states,
        },
        "preprocessing": {
            "normalization": {"mean": norm["mean"], "std": norm["std"]} if norm else None,
            "missing_values": None if tokens else "interpolate",
            "tokenizer": {"rule": WORD_RULE if spec.tokenizer == "word" else CHAR_RULE,
                          "level": spec.tokenizer} if tokens and vocab else None,
            "idx_to_token": vocab,
            "pad_id": pad_id,
            "unk_id": spec.unk_id,
            "truncate": (spec.max_length or 0) if tokens else 0,
        },
        "outputs": task.outputs(states, streaming, per_step),
        "versions": {"mxlstm": __version__, "mxnet": mx.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "config": cfg.to_dict(),
    }


def files_of(prefix: str | Path) -> tuple[Path, Path, Path]:
    p = str(prefix)
    return Path(p + "-symbol.json"), Path(p + "-0000.params"), Path(p + "-meta.json")


def import_block(prefix: str | Path, names: list[str]) -> gluon.SymbolBlock:
    symbol_file, params_file, _ = files_of(prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gluon.SymbolBlock.imports(str(symbol_file), names, str(params_file),
                                         ctx=mx.cpu())


@standard_ops()  # symbol files keep MXNet's own RNN operator (no mxlstm kernel inside)
def export_model(model_dir: str | Path, prefix: str | Path, tag: str = "best",
                 streaming: bool = False, fixed_length: bool = False) -> dict:
    """Export checkpoint ``tag`` of ``model_dir`` to ``PREFIX-{symbol.json,0000.params,
    meta.json}``, verify the round trip and return the meta dict.

    ``streaming=True`` exports a unidirectional sequence model as a stateful per-step graph
    (language models always export with states). ``fixed_length=True`` exports a sequence
    model whose data all have one length ``T`` without the ``valid_length`` input (the
    fastest graph: no masks, reversals with lengths or gathers; it then takes exactly ``T``
    steps per row). Raises :class:`ModelFileError` when such an export is not possible or
    the round trip differs by more than 1e-5 (the files are then removed).
    """
    from mxlstm.runs import load_model

    prepared, cfg, _ = load_model(model_dir, tag=tag)
    task = prepared.spec
    streaming = streaming and not task.stateful
    length = None
    if fixed_length:
        length, reason = fixed_length_refusal(prepared, streaming)
        if reason:
            raise ModelFileError(f"cannot export with --fixed-length: {reason}")
    block, names, states = build_graph(prepared, streaming, length)
    first, second = sample_inputs(prepared, task.input, states, length)
    block(*first)  # builds the cached graph that export writes
    symbol_file, params_file, meta_file = files_of(prefix)
    symbol_file.parent.mkdir(parents=True, exist_ok=True)
    block.export(str(prefix), epoch=0)
    rename_inputs(symbol_file, names)
    folded = fold_packed_weights(symbol_file, params_file, names)
    per_step = getattr(prepared.model, "per_step", False)
    observed = None if task.input.tokens else list(data_length(prepared)[1:])
    sidecar = describe(task, cfg, names, states, streaming, per_step, length, observed)
    sidecar["source"] = {"run": Path(model_dir).resolve().name, "tag": tag}  # no local path
    sidecar["graph"] = {"packed_rnn_weights": folded}
    stream_diff = None
    try:
        imported = import_block(prefix, names)
        diffs = [max_abs_diff(flat(block(*xs)), flat(imported(*xs))) for xs in (first, second)]
        if streaming:
            stream_diff = _stream_check(prepared.model, block, first)
            diffs.append(stream_diff)
        if length:  # the new graph against the trained model itself
            diffs += [max_abs_diff([prepared.model(xs[0], mx.nd.full((xs[0].shape[0],),
                                                                    length))],
                                   flat(block(*xs))) for xs in (first, second)]
    except mx.MXNetError as err:
        diffs = [float("inf")]
        log.error("reloading the export failed: %s", str(err).splitlines()[0])
    if not max(diffs) <= TOLERANCE:
        for f in (symbol_file, params_file, meta_file):
            f.unlink(missing_ok=True)
        raise ModelFileError(f"export of {model_dir} did not round-trip: max abs diff "
                             f"{max(diffs):.3g} > {TOLERANCE} (files removed)")
    sidecar["verification"] = {
        "max_abs_diff": max(diffs[:2]), "tolerance": TOLERANCE,
        "fixed_length_vs_trained_max_abs_diff": max(diffs[2:]) if length else None,
        "batches": [[int(v) for v in xs[0].shape] for xs in (first, second)],
        "streaming_vs_full_pass_max_abs_diff": stream_diff}
    sidecar["fingerprint"] = {"params_sha256": sha256_file(params_file)}
    meta_file.write_text(json.dumps(sidecar, indent=1, ensure_ascii=False))
    ship_predictor(meta_file.parent)  # the standalone predictor and the rules it shares
    log.info("exported %s to %s (max abs diff %.2g)", model_dir, prefix, max(diffs))
    return sidecar

"""Native ONNX graphs written from the weights: every cell, depth, direction and head
against mxlstm in ONNX Runtime, padded batches with garbage in the padding.

Models with random weights (no training); skipped without onnx / onnxruntime.
"""

from __future__ import annotations

import itertools

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.models import LanguageModel, SequenceModel
from mxlstm.blocks.recurrent import RecurrentLayer
from mxlstm.deploy.onnx_export import onnx_refusal

pytestmark = pytest.mark.onnx  # `make test-onnx` runs these (-m onnx)
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from mxlstm.deploy.onnx_check import check_batches, run, session  # noqa: E402
from mxlstm.deploy.onnx_graph import build_onnx, layer_weights  # noqa: E402

C, TOL = 5, 1e-5


def _model(**options) -> SequenceModel:
    model = SequenceModel(3, 6, **options)
    model.initialize(mx.init.Uniform(0.6))
    for name, param in model.collect_params().items():
        if "peep_" in name:  # peepholes start at zero: make them matter
            param.set_data(mx.nd.random.uniform(-0.8, 0.8, shape=param.shape))
    return model


def _spec(lengths: bool = True, tokens: int = 0, states=()) -> dict:
    return {"names": ["data"] + (["valid_length"] if lengths else []) +
            [s["name"] for s in states], "type": "tokens" if tokens else "float",
            "dtype": "float32", "features": None if tokens else C, "vocab_size": tokens or None,
            "states": list(states), "fixed_length": None if lengths else 7}


def _final_states(model: SequenceModel, cell: str, x, lengths, **options) -> list:
    trained = model.encoder
    encoder = RecurrentLayer(cell, trained.hidden_size, return_states=True,
                             prefix=trained.prefix, params=trained.params, **options)
    for stage in (model.embedding, model.projection):
        if stage is not None:
            x = stage(x)
    return [f.asnumpy() for f in encoder(x, lengths)[1]]


def _check(model, cell, spec, per_step=False, **options) -> None:
    kind = "tagging" if per_step else "sequence_classification"
    batches = check_batches(spec, seed=3)
    model(mx.nd.array(batches[0]["data"]), mx.nd.full((len(batches[0]["data"]),), 1))
    sess = session(build_onnx(model, kind, False, spec, ["logits"],
                              check_states=True).SerializeToString())
    for arrays in batches:
        x = mx.nd.array(arrays["data"])
        lengths = mx.nd.array(arrays.get("valid_length", np.full(len(x), x.shape[1])))
        got = run(sess, arrays)
        assert np.abs(got["logits"] - model(x, lengths).asnumpy()).max() <= TOL
        finals = _final_states(model, cell, x, lengths, **options)
        for name, value in zip(("final_state_h", "final_state_c"), finals):
            assert np.abs(got[name] - value).max() <= TOL, name
        if "valid_length" in arrays:  # each row alone, unpadded: the same answer
            for k, n in enumerate(arrays["valid_length"].astype(int)):
                alone = run(sess, {"data": arrays["data"][k:k + 1, :n],
                                   "valid_length": arrays["valid_length"][k:k + 1]})
                assert np.abs(alone["logits"][0] - got["logits"][k, :n if per_step else None]
                              ).max() <= TOL


@pytest.mark.parametrize("cell,layers,bidirectional,pooling", list(itertools.product(
    ["lstm", "gru", "rnn"], [1, 2, 3], [False, True], ["last", "mean", "max"])))
def test_sequence_model_matches_mxlstm(cell, layers, bidirectional, pooling):
    options = {"num_layers": layers, "bidirectional": bidirectional}
    model = _model(cell_type=cell, pooling=pooling, **options)
    _check(model, cell, _spec(), **options)


@pytest.mark.parametrize("options", [
    {"cell_type": "lstm", "peephole": True, "num_layers": 2, "bidirectional": True},
    {"cell_type": "lstm", "peephole": True, "pooling": "mean"},
    {"cell_type": "rnn", "activation": "relu", "num_layers": 2, "bidirectional": True},
    {"cell_type": "gru", "input_projection": 4, "bidirectional": True, "pooling": "max"},
    {"cell_type": "lstm", "per_step": True, "num_layers": 2, "bidirectional": True},
    {"cell_type": "gru", "per_step": True, "head_units": (7,)},
])
def test_cell_options_and_heads_match_mxlstm(options):
    model = _model(**options)
    enc = {k: options[k] for k in ("num_layers", "bidirectional", "peephole", "activation")
           if k in options}
    _check(model, options["cell_type"], _spec(), per_step=options.get("per_step", False),
           **enc)


def test_token_input_and_fixed_length_graph():
    model = SequenceModel(2, 6, vocab_size=30, embed_size=4, bidirectional=True,
                          pooling="mean")
    model.initialize(mx.init.Uniform(0.6))
    _check(model, "lstm", _spec(tokens=30), bidirectional=True)
    model = _model(bidirectional=True, pooling="max")
    _check(model, "lstm", _spec(lengths=False), bidirectional=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_states_in_and_out(cell):
    lm = LanguageModel(40, 6, 6, num_layers=3, cell_type=cell, tie_weights=True)
    lm.initialize(mx.init.Uniform(0.4))
    lm(mx.nd.zeros((1, 2)), lm.begin_state(1))
    states = [{"name": n, "shape": [3, "N", 6]}  # (L, N, H)
              for n in ["state_h", "state_c"][:2 if cell == "lstm" else 1]]
    out_names = ["logits"] + [s["name"] + "_out" for s in states]
    sess = session(build_onnx(lm, "language_model", False, _spec(False, 40, states),
                              out_names).SerializeToString())
    for arrays in check_batches(_spec(False, 40, states), seed=2):
        logits, new = lm(mx.nd.array(arrays["data"]),
                         [mx.nd.array(arrays[s["name"]]) for s in states])
        got = run(sess, arrays)
        assert np.abs(got["logits"] - logits.asnumpy()).max() <= TOL
        for name, value in zip(out_names[1:], new):
            assert np.abs(got[name] - value.asnumpy()).max() <= TOL


def test_gate_order_is_onnx_order():
    model = _model(cell_type="lstm", peephole=True)
    model(mx.nd.zeros((1, 2, C)), mx.nd.array([2]))
    w = layer_weights(model.encoder, 0)
    i2h = model.encoder.l0_i2h_weight.data().asnumpy()  # MXNet i, f, g, o
    h = 6
    assert np.array_equal(w["W"][0, h:2 * h], i2h[3 * h:])  # ONNX o second
    assert np.array_equal(w["W"][0, 2 * h:3 * h], i2h[h:2 * h])  # then f
    assert np.array_equal(w["P"][0, 2 * h:], model.encoder.l0_peep_f.data().asnumpy())


def test_refusals_name_what_onnx_cannot_express():
    assert onnx_refusal(SequenceModel(3, 8, num_layers=2, bidirectional=True)) is None
    assert onnx_refusal(SequenceModel(3, 8, peephole=True, recurrent_dropout=0.2)) is None
    cases = {"layer_norm": "layer normalisation", "projection_size": "projection (LSTMP)",
             "cell_clip": "clipping of the cell state", "zoneout": "zoneout mixes"}
    for option, words in cases.items():
        value = {"layer_norm": True, "projection_size": 4}.get(option, 0.5)
        reason = onnx_refusal(SequenceModel(3, 8, **{option: value}))
        assert words in reason and "\n" not in reason, option

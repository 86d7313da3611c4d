"""The series model (LSTM-FCN) in native ONNX: z-normalisation, window averaging, the
convolutional branch with batch normalisation, regression targets, fixed-length graphs,
against mxlstm in ONNX Runtime on padded batches with garbage in the padding.

Models with random weights and random batch-norm statistics (no training); skipped
without onnx / onnxruntime.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm.blocks.recurrent import RecurrentLayer
from mxlstm.blocks.series_model import SeriesModel

pytestmark = pytest.mark.onnx  # `make test-onnx` runs these (-m onnx)
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from mxlstm.deploy.onnx_check import check_batches, run, session  # noqa: E402
from mxlstm.deploy.onnx_graph import build_onnx  # noqa: E402

C, TOL = 3, 1e-5


def _model(**options) -> SeriesModel:
    mx.random.seed(5)
    model = SeriesModel(4, 6, **options)
    model.initialize(mx.init.Uniform(0.6))
    model(mx.nd.ones((2, 5, C)), mx.nd.array([5, 3]))
    for name, param in model.collect_params().items():  # batch norm away from identity
        if name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=param.shape))
        elif name.endswith(("running_var", "gamma")):
            param.set_data(mx.nd.random.uniform(0.3, 1.7, shape=param.shape))
    return model


def _spec(fixed_length: int | None = None) -> dict:
    return {"names": ["data"] + ([] if fixed_length else ["valid_length"]), "type": "float",
            "dtype": "float32", "features": C, "vocab_size": None, "states": [],
            "fixed_length": fixed_length}


def _final_states(model: SeriesModel, x, lengths, **options) -> list:
    trained = model.encoder
    encoder = RecurrentLayer(model.options()["cell_type"], trained.hidden_size,
                             return_states=True, prefix=trained.prefix,
                             params=trained.params, **options)
    h, steps = model.encoder_input(mx.nd, x, lengths)
    return [f.asnumpy() for f in encoder(h, steps)[1]]


CASES = [
    {"series_norm": True, "conv_filters": (5, 6, 4), "bidirectional": True},
    {"series_norm": True, "conv_filters": (5, 6, 4, 3), "stride": 3, "bidirectional": True},
    {"series_norm": True, "keep_level": True, "conv_filters": (4,), "stride": 2,
     "pooling": "mean"},
    {"conv_filters": (5, 6), "stride": 2, "pooling": "max", "cell_type": "gru",
     "num_layers": 2},
    {"series_norm": True, "pooling": "last", "cell_type": "rnn", "head_units": (7,)},
    {"conv_filters": (3,), "target": (2.5, 4.0), "bidirectional": True, "num_layers": 2},
    {"series_norm": True, "conv_filters": (5, 4), "stride": 3, "conv_stride": 1,
     "bidirectional": True},  # the conv branch at every step, the encoder on windows
    {"conv_filters": (4,), "stride": 4, "conv_stride": 2, "pooling": "mean"},
    {"series_norm": True, "conv_filters": (5, 4), "stride": 3, "window_stats": "meanmaxmin",
     "bidirectional": True},  # both branches on window means, maxima and minima
    {"conv_filters": (4,), "stride": 4, "conv_stride": 1, "window_stats": "meanmaxmin"},
    {"series_norm": True, "conv_filters": (5, 4), "stride": 4, "fine_stride": 2,
     "bidirectional": True},  # multi-scale: a second conv branch on windows of 2
    {"conv_filters": (4,), "stride": 3, "fine_stride": 1, "target": (1.0, 3.0)},
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(sorted(o)))
def test_series_model_matches_mxlstm_with_garbage_in_the_padding(options):
    model = _model(**options)
    kind = "regression" if "target" in options else "sequence_classification"
    sess = session(build_onnx(model, kind, False, _spec(), ["logits"],
                              check_states=True).SerializeToString())
    enc = {k: options[k] for k in ("num_layers", "bidirectional") if k in options}
    for seed in (3, 4):  # two sequences of batch shapes (ONNX Runtime reuses buffers)
        for arrays in check_batches(_spec(), seed=seed):
            x, lengths = mx.nd.array(arrays["data"]), mx.nd.array(arrays["valid_length"])
            got = run(sess, arrays)
            assert np.abs(got["logits"] - model(x, lengths).asnumpy()).max() <= TOL
            finals = _final_states(model, x, lengths, **enc)
            for name, value in zip(("final_state_h", "final_state_c"), finals):
                assert np.abs(got[name] - value).max() <= TOL, name
            for k, n in enumerate(arrays["valid_length"].astype(int)):  # each row alone
                alone = run(sess, {"data": arrays["data"][k:k + 1, :n],
                                   "valid_length": arrays["valid_length"][k:k + 1]})
                assert np.abs(alone["logits"][0] - got["logits"][k]).max() <= TOL


@pytest.mark.parametrize("options", [CASES[1], CASES[3], CASES[8], CASES[10]],
                         ids=["znorm-stride3", "gru-max", "meanmaxmin", "fine"])
def test_fixed_length_series_graph(options):
    model = _model(**options)
    fixed = model.variant(fixed_length=10)
    sess = session(build_onnx(fixed, "sequence_classification", False, _spec(10),
                              ["logits"]).SerializeToString())
    for arrays in check_batches(_spec(10), seed=2):
        x = mx.nd.array(arrays["data"])
        reference = model(x, mx.nd.full((x.shape[0],), 10)).asnumpy()
        assert np.abs(run(sess, arrays)["logits"] - reference).max() <= TOL


def test_graph_holds_conv_nodes_with_batch_norm_folded_in():
    model = _model(**CASES[1])
    proto = build_onnx(model, "sequence_classification", False, _spec(), ["logits"])
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 4 and "BatchNormalization" not in ops  # folded into Conv
    assert all(len(n.input) == 3 for n in proto.graph.node if n.op_type == "Conv")
    assert ops.count("AveragePool") == 1 and ops.count("LSTM") == 1
    pads = [list(a.ints) for n in proto.graph.node if n.op_type == "Conv"
            for a in n.attribute if a.name == "pads"]
    assert pads == [[4, 3], [2, 2], [1, 1], [1, 1]]  # kernels 8, 5, 3, 3


@pytest.mark.parametrize("classify", [True, False], ids=["classifier", "regressor"])
def test_seed_ensemble_is_one_graph_of_its_members(classify):
    from mxlstm.ensemble import EnsembleModel

    members = [_model(**CASES[1]), _model(**CASES[3])]
    for k, member in enumerate(members):  # make the two members differ
        for param in member.collect_params().values():
            param.set_data(param.data() * (1.0 + 0.3 * k))
    rng = np.random.RandomState(0)
    affine = (rng.uniform(0.5, 2, C).astype(np.float32), rng.randn(C).astype(np.float32))
    ensemble = EnsembleModel(members, classify=classify, affines=[None, affine])
    ensemble.initialize()
    kind = "sequence_classification" if classify else "regression"
    proto = build_onnx(ensemble, kind, False, _spec(), ["logits"], check_states=True)
    assert [o.name for o in proto.graph.output] == ["logits"]  # no states of its own
    assert [n.op_type for n in proto.graph.node].count("AveragePool") == 2  # one a member
    sess = session(proto.SerializeToString())
    for arrays in check_batches(_spec(), seed=6):
        x, lengths = mx.nd.array(arrays["data"]), mx.nd.array(arrays["valid_length"])
        reference = ensemble(x, lengths).asnumpy()
        assert np.abs(run(sess, arrays)["logits"] - reference).max() <= TOL
        if classify:  # log of the mean of the members' probabilities
            mean = np.mean([np.exp(m(x, lengths).log_softmax(axis=-1).asnumpy())
                            for m in members[:1]] + [np.exp(members[1](
                                x * mx.nd.array(affine[0]) + mx.nd.array(affine[1]),
                                lengths).log_softmax(axis=-1).asnumpy())], axis=0)
            assert np.abs(np.exp(reference) - mean).max() <= 1e-5


def test_window_stats_graph_holds_max_pools_and_names_the_stage():
    from mxlstm.deploy.onnx_series import stages

    model = _model(**CASES[8])
    ops = [n.op_type for n in build_onnx(model, "sequence_classification", False, _spec(),
                                         ["logits"]).graph.node]
    assert ops.count("AveragePool") == 1 and ops.count("MaxPool") == 2
    assert "windows of 3 steps as mean, max and min" in stages(model)


def test_fine_branch_graph_holds_two_conv_branches():
    from mxlstm.deploy.onnx_series import stages

    model = _model(**CASES[10])
    ops = [n.op_type for n in build_onnx(model, "sequence_classification", False, _spec(),
                                         ["logits"]).graph.node]
    assert ops.count("Conv") == 4 and ops.count("AveragePool") == 2  # windows of 4 and 2
    assert "a second convolutional branch reads windows of 2 steps averaged" in stages(model)

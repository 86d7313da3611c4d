"""EnsembleModel: the mean of the members' probabilities, each on its own normalisation."""

from __future__ import annotations

import mxnet as mx
import numpy as np

from mxlstm.blocks.series_model import SeriesModel
from mxlstm.ensemble import EnsembleModel, _affine, _id_map


def _member(seed):
    mx.random.seed(seed)
    model = SeriesModel(3, hidden_size=4, conv_filters=(4,))
    model.initialize(mx.init.Xavier())
    return model


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_mean_of_probabilities_with_each_members_normalisation():
    a, b = _member(0), _member(1)
    norm_a = {"mean": [1.0, -2.0], "std": [2.0, 0.5]}
    norm_b = {"mean": [0.5, 0.0], "std": [1.0, 4.0]}
    ensemble = EnsembleModel([a, b], True, [None, _affine(norm_a, norm_b, 2)])
    ensemble.params.initialize()
    ensemble.hybridize(static_alloc=True)
    raw = np.random.RandomState(0).normal(size=(4, 6, 2)).astype(np.float32)
    lengths = mx.nd.array([6, 5, 3, 6])
    za = (raw - np.array(norm_a["mean"])) / np.array(norm_a["std"])
    zb = (raw - np.array(norm_b["mean"])) / np.array(norm_b["std"])
    expected = (_softmax(a(mx.nd.array(za), lengths).asnumpy())
                + _softmax(b(mx.nd.array(zb), lengths).asnumpy())) / 2
    got = ensemble(mx.nd.array(za), lengths).asnumpy()
    np.testing.assert_allclose(_softmax(got), expected, rtol=1e-5, atol=1e-6)
    assert _affine(norm_a, norm_a, 2) is None


def test_vocabulary_map():
    from gluonnlp import Vocab, data

    first = Vocab(data.count_tokens(["a", "b", "c"]), unknown_token="<unk>")
    other = Vocab(data.count_tokens(["c", "b", "d"]), unknown_token="<unk>")
    ids = _id_map({"files": {"vocab.json": first.to_json()}},
                  {"files": {"vocab.json": other.to_json()}})
    for k, token in enumerate(first.idx_to_token):
        assert ids[k] == other[token]  # 'a' is unknown to the other member: its <unk>


def test_a_classifier_ensemble_averages_probabilities_a_regressor_values(tmp_path):
    from mxlstm import runs
    from mxlstm.tasks import user_config

    tiny = {"model.hidden_size": 4, "model.conv_filters": "4", "train.epochs": 1,
            "train.max_batches": 1, "train.ensemble": 2, "train.progress": False}
    for task, classify in (("vowels", True), ("series-regression", False)):
        runs.train(user_config(task, flags=tiny), tmp_path / task)
        prepared, _, _ = runs.load_model(tmp_path / task)
        assert prepared.model.classify is classify
        x, _, lengths = (b.as_in_context(mx.cpu()) for b in next(iter(prepared.test_loader)))
        out = prepared.model(x, lengths).asnumpy()
        if classify:  # log of the mean probability: each row's probabilities sum to 1
            np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)

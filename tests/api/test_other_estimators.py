"""The Python API's regressor, text classifier and language model: they learn, and their
predictions agree with their own evaluation and with the exported predictor."""

from __future__ import annotations

import numpy as np
import pytest

import mxlstm
from mxlstm.data.text import load_movie_reviews
from mxlstm.errors import DataError

QUIET = {"progress": "off", "quiet": True}


def test_regressor_learns_and_predict_matches_its_metrics(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randn(240, 16, 2).astype(np.float32)
    y = 3.0 * X[:, :, 0].mean(axis=1) + 1.0
    reg = mxlstm.SequenceRegressor(epochs=4, max_steps=0, **QUIET)
    reg.fit(X[:200], y[:200], test=(X[200:], y[200:]), out=tmp_path / "reg")
    pred = reg.predict(X[200:])
    assert pred.shape == (40,)
    rmse = float(np.sqrt(np.mean((pred - y[200:]) ** 2)))
    assert rmse == pytest.approx(reg.report_["test"]["rmse"], rel=1e-5)
    assert reg.score(X[200:], y[200:]) > 0.5  # R² of a model that learnt the mean
    assert isinstance(mxlstm.load(tmp_path / "reg"), mxlstm.SequenceRegressor)
    with pytest.raises(DataError, match="non-finite target"):
        reg.evaluate(X[:2], [1.0, np.nan])


@pytest.fixture(scope="module")
def reviews():
    data = load_movie_reviews()
    order = np.random.RandomState(1).permutation(len(data))[:1600]
    return [data.texts[i] for i in order], [data.labels[i] for i in order]


def test_text_classifier_on_lists_of_strings(reviews, tmp_path):
    texts, labels = reviews
    clf = mxlstm.TextClassifier(epochs=2, **QUIET)
    clf.fit(texts[:1200], labels[:1200], valid=(texts[1200:1400], labels[1200:1400]),
            test=(texts[1400:], labels[1400:]), out=tmp_path / "text")
    assert clf.report_["counts"] == {"train": 1200, "valid": 200, "test": 200}
    majority = clf.report_["baseline"]["majority_accuracy"]
    predicted = clf.predict(texts[1400:])
    accuracy = float(np.mean([str(p) == str(t) for p, t in zip(predicted, labels[1400:])]))
    assert accuracy == pytest.approx(clf.report_["test"]["accuracy"], abs=1e-12)
    assert accuracy > majority  # it learnt more than the class frequencies
    proba = clf.predict_proba(["a wonderful film", "dull and boring"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    with pytest.raises(DataError, match="expected a list of strings"):
        clf.predict_proba("one string, not a list")


def test_text_export_answers_like_predict_proba(reviews, tmp_path):
    from mxlstm.deploy.predictor import Predictor

    texts, labels = reviews
    clf = mxlstm.TextClassifier(epochs=1, hidden_size=16, embed_size=16, **QUIET)
    clf.fit(texts[:600], labels[:600], out=tmp_path / "text")
    clf.export(tmp_path / "export" / "text")
    answers = Predictor(tmp_path / "export" / "text").predict(texts[:10])
    names = clf.label_names_
    exported = np.array([[a["probabilities"][n] for n in names] for a in answers])
    np.testing.assert_allclose(exported, clf.predict_proba(texts[:10]), atol=1e-5)


def test_language_model_fits_a_corpus_string(tmp_path):
    line = "the cat sat on the mat. the dog sat on the log. "
    corpus = line * 120
    lm = mxlstm.LanguageModel(epochs=8, lr=0.01, level="char", hidden_size=32, embed_size=32,
                              num_layers=1, bptt=20, batch_size=16, **QUIET)
    lm.fit(corpus, out=tmp_path / "lm")
    ppl = lm.evaluate(line * 10)["perplexity"]
    assert ppl < 0.5 * lm.report_["baseline"]["unigram_perplexity"]  # context helps
    p = lm.predict_proba("the ca")
    assert p.shape == (len(lm.vocabulary_),)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert lm.predict("the ca", top_k=3)[0] in lm.vocabulary_
    with pytest.raises(DataError, match="no tokens"):
        lm.predict_proba("")
    assert isinstance(mxlstm.load(tmp_path / "lm"), mxlstm.LanguageModel)

"""The Python API's series classifier: the same run as the command line, predictions that
agree with its evaluation, resume and refusals."""

from __future__ import annotations

import numpy as np
import pytest

import mxlstm
from mxlstm import runs
from mxlstm.data.sources import load_digits, stratified_split
from mxlstm.errors import ConfigError, DataError
from mxlstm.tasks import user_config

SHORT = {"epochs": 2, "progress": "off", "quiet": True}


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return np.stack(data.sequences), np.asarray(data.labels)


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory):
    X, y = digits
    out = tmp_path_factory.mktemp("api") / "digits"
    return mxlstm.SequenceClassifier(preset="digits", **SHORT).fit(X, y, out=out)


def test_numpy_arrays_train_the_same_model_as_the_command_line(fitted, tmp_path):
    cfg = user_config("digits", flags={"train.epochs": 2})
    cli = runs.train(cfg, tmp_path / "cli", progress="off", quiet=True)
    api = fitted.report_
    assert api["test"]["accuracy"] == cli["test"]["accuracy"]
    assert api["test"]["confusion"] == cli["test"]["confusion"]
    assert api["best_valid"] == cli["best_valid"]
    assert api["test"]["accuracy"] > 0.5  # it learnt something in two epochs


def test_predictions_agree_with_evaluate(fitted, digits):
    X, y = digits
    _, test_idx = stratified_split(y, 0.2, seed=0)  # the run's own test split
    proba = fitted.predict_proba(X[test_idx])
    assert proba.shape == (len(test_idx), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    predicted = fitted.predict(X[test_idx])
    assert list(fitted.classes_) == list(range(10))
    accuracy = float(np.mean(predicted == y[test_idx]))
    assert accuracy == pytest.approx(fitted.report_["test"]["accuracy"], abs=1e-12)
    assert fitted.score(X[test_idx], y[test_idx]) == pytest.approx(accuracy, abs=1e-12)


def test_ragged_lists_equal_padded_arrays_with_lengths(fitted, digits):
    X, _ = digits
    cut = [8, 5, 3, 1, 6]
    ragged = [X[i, :n] for i, n in enumerate(cut)]
    padded = np.zeros_like(X[:5])
    padded[:, :, :] = 99.0  # garbage past each length must not matter
    for i, n in enumerate(cut):
        padded[i, :n] = X[i, :n]
    a = fitted.predict_proba(ragged)
    b = fitted.predict_proba(padded, lengths=np.array(cut))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_load_gives_back_the_same_predictions(fitted, digits):
    X, _ = digits
    again = mxlstm.load(fitted.run_dir_)
    assert isinstance(again, mxlstm.SequenceClassifier)
    np.testing.assert_allclose(again.predict_proba(X[:50]), fitted.predict_proba(X[:50]),
                               atol=1e-7)


def test_export_answers_like_predict_proba(fitted, digits, tmp_path):
    from mxlstm.deploy.predictor import Predictor

    X, _ = digits
    fitted.export(tmp_path / "digits")
    answers = Predictor(tmp_path / "digits").predict(list(X[:20]))
    exported = np.array([[a["probabilities"][str(k)] for k in range(10)] for a in answers])
    np.testing.assert_allclose(exported, fitted.predict_proba(X[:20]), atol=1e-5)


def test_string_labels_come_back_as_strings(tmp_path):
    rng = np.random.RandomState(0)
    y = np.where(rng.rand(120) > 0.5, "up", "down")
    slope = np.where(y == "up", 1.0, -1.0)[:, None] * np.linspace(-1, 1, 12)
    X = (slope + 0.3 * rng.randn(120, 12)).astype(np.float32)[:, :, None]
    clf = mxlstm.SequenceClassifier(epochs=6, hidden_size=16, conv_filters="8,8,8",
                                    progress="off", quiet=True).fit(X, y, out=tmp_path / "r")
    assert list(clf.classes_) == ["down", "up"]
    assert set(clf.predict(X[:30])) <= {"down", "up"}
    assert clf.score(X, y) > 0.8
    with pytest.raises(DataError, match="label 'sideways' does not occur in training"):
        clf.evaluate(X[:2], ["up", "sideways"])


def test_resume_continues_and_changed_data_is_refused(digits, tmp_path):
    X, y = digits
    X, y = X[:400], y[:400]
    out = tmp_path / "run"
    settings = {"epochs": 1, "hidden_size": 16, "head_units": "", "progress": "off",
                "quiet": True}
    mxlstm.SequenceClassifier(preset="digits", **settings).fit(X, y, out=out)
    recorded = (out / "data" / "train.npz").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        mxlstm.SequenceClassifier(preset="digits", **settings).fit(X[::-1], y[::-1], out=out)
    assert (out / "data" / "train.npz").read_bytes() == recorded
    with pytest.raises(DataError, match="differ from the data this run was trained on"):
        mxlstm.SequenceClassifier(preset="digits", **settings).fit(
            X[::-1], y[::-1], out=out, resume=True, extend_epochs=1)
    assert (out / "data" / "train.npz").read_bytes() == recorded
    again = mxlstm.SequenceClassifier(preset="digits", **settings).fit(
        X, y, out=out, resume=True, extend_epochs=1)
    assert again.report_["epochs_run"] == 2


def test_bad_settings_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="model.hidden_size"):
        mxlstm.SequenceClassifier(hidden_size=0).fit(np.zeros((4, 3, 1)), [0, 1, 0, 1],
                                                     out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown setting 'hiden_size'"):
        mxlstm.SequenceClassifier(hiden_size=3)
    with pytest.raises(ConfigError, match="preset 'text' is not one of uea, digits, vowels"):
        mxlstm.SequenceClassifier(preset="text")
    with pytest.raises(ConfigError, match="model.hidden_size"):
        mxlstm.SequenceClassifier(hidden_size=0).config()
    with pytest.raises(ConfigError, match="not fitted yet"):
        mxlstm.SequenceClassifier().predict(np.zeros((1, 3, 1)))
    with pytest.raises(DataError, match=r"expected an array \(N, T, C\) or \(N, T\)"):
        mxlstm.SequenceClassifier().fit(np.zeros(5), np.zeros(5))

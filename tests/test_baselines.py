"""mxlstm.baselines against values worked out by hand on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from mxlstm import baselines as B


def col(*values):
    return np.array(values, np.float64)[:, None]


def test_dtw_distance_by_hand():
    # a = 0 1 2, b = 0 2: best path (0,0) (1,1)? cost 1; (2,1) cost 0 -> total 1, sqrt 1
    assert B.dtw_distance(col(0, 1, 2), col(0, 2)) == pytest.approx(1.0)
    # a warped copy costs nothing
    assert B.dtw_distance(col(0, 1, 2, 1), col(0, 0, 1, 2, 2, 1)) == 0.0
    # equal lengths, no helpful warp: 0 0 vs 3 4 -> path (0,0),(1,1): 9 + 16 = 25, but the
    # warp (0,0),(1,0),(1,1) costs 9+9+16; the diagonal is best -> 5
    assert B.dtw_distance(col(0, 0), col(3, 4)) == pytest.approx(5.0)
    # a band of 1 step allows the diagonal only: 0 1 2 vs 1 2 3 -> sqrt(3); unbanded the
    # path (0,0) (1,0) (2,1) (2,2)? costs 1 + 0 + 0 + 1 = 2
    assert B.dtw_distance(col(0, 1, 2), col(1, 2, 3), window=1) == pytest.approx(np.sqrt(3))
    assert B.dtw_distance(col(0, 1, 2), col(1, 2, 3)) == pytest.approx(np.sqrt(2))
    assert B.dtw_window([150, 427]) == 43 and B.dtw_window([5]) == 1
    # two channels: per-step squared Euclidean distance 1 + 1 at one step
    assert B.dtw_distance(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])) == \
        pytest.approx(np.sqrt(2))


def test_dtw_matrix_library_matches_exact():
    pytest.importorskip("dtaidistance")
    rng = np.random.RandomState(0)
    train = [rng.normal(size=(n, 1)) for n in (5, 7, 6)]
    test = [rng.normal(size=(n, 1)) for n in (6, 4)]
    for window in (None, 2):
        np.testing.assert_allclose(B.dtw_matrix(test, train, window),
                                   B.dtw_matrix(test, train, window, exact=True), rtol=1e-9)
    multi = [rng.normal(size=(5, 2)) for _ in range(3)]
    np.testing.assert_allclose(B.dtw_matrix(multi[:1], multi[1:]),
                               B.dtw_matrix(multi[:1], multi[1:], exact=True), rtol=1e-9)


def test_znormalize_and_majority():
    np.testing.assert_allclose(B.znormalize(col(1, 3))[:, 0], [-1, 1])
    np.testing.assert_allclose(B.znormalize(col(2, 2))[:, 0], [0, 0])  # constant: shifted
    assert B.majority_accuracy([1, 1, 0, 2], [1, 0, 1, 1]) == 0.75
    assert B.majority_accuracy([0, 1], [1, 1]) == 0.0  # tie -> smallest class


def test_series_classification_by_hand():
    # z-normalised, train A = (-1, 1, ...) rising, B falling; test 1 rises, test 2 falls
    train = [col(0, 1, 2), col(2, 1, 0)]
    test = [col(5, 6, 7), col(9, 8, 1), col(0, 1, 2)]
    out = B.series_classification(train, [0, 1], test, [0, 1, 1], dtw=False)
    assert out["1nn_euclidean_accuracy"] == pytest.approx(2 / 3)
    assert out["majority_accuracy"] == pytest.approx(1 / 3)
    assert out["1nn_dtw_accuracy"] == B.DTW_SKIPPED
    ragged = B.series_classification(train, [0, 1], [col(0, 1)], [0], dtw=False)
    assert ragged["1nn_euclidean_accuracy"].startswith("skipped")


def test_dtw_skipped_without_the_library(monkeypatch):
    monkeypatch.setattr(B, "_dtaidistance", lambda: None)
    out = B.series_classification([col(0, 1), col(1, 0)], [0, 1], [col(0, 1)], [0])
    assert out["1nn_dtw_accuracy"] == "skipped (pip install dtaidistance)"


def test_regression_scores_by_hand():
    s = B.regression_scores([1.0, 2.0, 5.0], [1.0, 3.0, 2.0])
    # errors 0, -1, 3: mse 10/3, mae 4/3; targets mean 2, SST 2 -> r2 = 1 - 10/2 = -4
    assert s["mse"] == pytest.approx(10 / 3)
    assert s["rmse"] == pytest.approx(np.sqrt(10 / 3))
    assert s["mae"] == pytest.approx(4 / 3)
    assert s["r2"] == pytest.approx(-4.0)


def test_ridge_by_hand():
    # one feature x = 0, 1, 2, y = 2x + 1: alpha 0 recovers the line; alpha = 2 with
    # centred Sxx = 2, Sxy = 4 gives w = 4 / (2 + 2) = 1 and b = mean(y) - w mean(x) = 2
    x, y = col(0, 1, 2), np.array([1.0, 3.0, 5.0])
    w, b = B.ridge_fit(x, y, 0.0)
    assert w[0, 0] == pytest.approx(2.0) and b[0] == pytest.approx(1.0)
    w, b = B.ridge_fit(x, y, 2.0)
    assert w[0, 0] == pytest.approx(1.0) and b[0] == pytest.approx(2.0)


def test_ridge_leave_one_out_equals_refitting():
    rng = np.random.RandomState(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=7)
    errors = []
    for k in range(7):
        keep = np.arange(7) != k
        w, b = B.ridge_fit(x[keep], y[keep], 0.5)
        errors.append(float((x[k] @ w + b - y[k])[0] ** 2))
    assert B.ridge_loo_error(x, y, 0.5) == pytest.approx(np.mean(errors))


def test_series_regression_mean_and_ridge():
    train = [col(0, 1), col(1, 0), col(2, 2), col(1, 1)]
    y = [1.0, 1.0, 4.0, 2.0]  # = sum of the two values
    out = B.series_regression(train, y, [col(3, 0)], [3.0])
    assert out["mean_predictor"]["mse"] == pytest.approx(1.0)  # mean 2 vs 3
    assert out["ridge"]["rmse"] < 0.05  # nearly exact with the smallest penalty


def test_bag_of_words_logistic_learns_a_word():
    # class 1 iff token 3 occurs; tokens 1 and 2 are as frequent in both classes
    train = [np.array(d) for d in ([1, 2], [3, 1], [3, 2], [1], [3], [2])]
    y = [0, 1, 1, 0, 1, 0]
    out = B.text_classification(train, y, [np.array([3, 1]), np.array([1, 2])], [1, 0],
                                vocab_size=4, num_classes=2)
    assert out["bow_logistic_accuracy"] == 1.0
    assert out["majority_accuracy"] == 0.5  # a 3 / 3 tie goes to class 0


def test_multivariate_series_keep_their_levels():
    # class = the level of channel 1 (its shape is the same for both classes); per-series
    # z-normalisation would make the two classes identical
    def series(level):
        return np.stack([[0.0, 1.0, 0.0], [level, level + 1, level]], axis=1)
    out = B.series_classification([series(0.0), series(10.0)], [0, 1],
                                  [series(9.0), series(1.0)], [1, 0], dtw=False)
    assert out["1nn_euclidean_accuracy"] == 1.0


def test_report_baselines_by_the_kind_of_data():
    series = {"kind": "series", "train_x": [col(0, 1, 2), col(2, 1, 0)], "train_y": [0, 1],
              "test_x": [col(5, 3, 2)], "test_y": [1]}  # falling, as the second
    assert B.report_baselines(series)["1nn_euclidean_accuracy"] == 1.0
    assert "ridge" in B.report_baselines({**series, "kind": "regression",
                                          "train_y": [0.0, 1.0], "test_y": [1.0]})
    text = {"kind": "text", "vocab_size": 4, "num_classes": 2, "train_x": [np.array([3])],
            "train_y": [1], "test_x": [np.array([3])], "test_y": [1]}
    assert B.report_baselines(text)["majority_accuracy"] == 1.0
    assert B.report_baselines(None) == {}
    with pytest.raises(ValueError, match="unknown kind 'tagging'"):
        B.report_baselines({**series, "kind": "tagging"})

"""Metrics: hand-computed confusion / F1, MXNet cross-checks, regression, LM, baselines."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest

from mxlstm.errors import ConfigError
from mxlstm.training.metrics import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    LanguageModelMetrics,
    RegressionMetrics,
    is_better,
    majority_baseline,
    metric_direction,
    unigram_perplexity,
)


def one_hot_logits(pred, k):
    out = np.zeros((len(pred), k), dtype=np.float32)
    out[np.arange(len(pred)), pred] = 1.0
    return out


def test_confusion_and_macro_f1_by_hand():
    # 4 classes; class 3 is never present and never predicted -> left out of macro F1.
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    m = ClassificationMetrics(4, label_names=["a", "b", "c", "d"])
    m.update(mx.nd.array(true[:3]), mx.nd.array(one_hot_logits(pred[:3], 4)))
    m.update(true[3:], one_hot_logits(pred[3:], 4))
    m.update_loss(3.0, 6)
    r = m.result()
    assert r["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    # F1: class 0: P=1, R=2/3 -> 0.8; class 1: P=1/2, R=1/2 -> 0.5; class 2: P=1/2, R=1 -> 2/3
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["loss"] == 0.5 and r["count"] == 6
    assert m.label_names == ["a", "b", "c", "d"]
    m.reset()
    r = m.result()
    assert math.isnan(r["accuracy"]) and math.isnan(r["macro_f1"]) and "loss" not in r


def test_accuracy_matches_mxnet_accuracy():
    rng = np.random.RandomState(0)
    m, ref = ClassificationMetrics(5), mx.metric.Accuracy()
    for _ in range(4):
        labels, logits = rng.randint(0, 5, 37), rng.randn(37, 5).astype(np.float32)
        m.update(mx.nd.array(labels), mx.nd.array(logits))
        ref.update([mx.nd.array(labels)], [mx.nd.array(logits)])
    c = np.array(m.result()["confusion"])
    assert m.result()["accuracy"] == pytest.approx(ref.get()[1], abs=1e-12)
    assert m.result()["accuracy"] == pytest.approx(np.trace(c) / c.sum())


def test_per_step_labels_with_mask_and_column_labels():
    labels = np.array([[0, 1, 9], [2, 2, 2]])  # 9 is padding, masked out
    logits = np.stack([one_hot_logits(np.array([0, 0, 0]), 3),
                       one_hot_logits(np.array([2, 2, 1]), 3)])
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    m = ClassificationMetrics(3)
    m.update(labels, logits, mask)
    assert m.result()["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 1, 2]]
    with pytest.raises(ValueError, match="label 9"):
        m.update(labels, logits)
    m.reset()
    m.update(np.array([[1], [0]]), one_hot_logits(np.array([1, 1]), 3))  # (N, 1) labels
    assert m.result()["accuracy"] == 0.5
    with pytest.raises(ValueError, match="do not fit"):
        m.update(np.array([1, 0, 1]), one_hot_logits(np.array([1, 1]), 3))
    with pytest.raises(ValueError, match="classes"):
        m.update(np.array([1, 0]), np.zeros((2, 4)))


def test_regression_by_hand():
    m = RegressionMetrics()
    m.update(np.array([1.0, 2.0, 3.0]), mx.nd.array([[1.5], [2.0], [1.0]]))
    m.update(np.array([[0.0, 4.0]]), np.array([[1.0, 4.0]]), mask=np.array([[1, 0]]))
    r = m.result()
    # errors 0.5, 0, -2, 1 -> mse = (0.25 + 0 + 4 + 1) / 4, mae = 3.5 / 4
    assert r["mse"] == pytest.approx(5.25 / 4)
    assert r["mae"] == pytest.approx(3.5 / 4)
    assert r["rmse"] == pytest.approx(math.sqrt(5.25 / 4))
    assert r["count"] == 4
    with pytest.raises(ValueError):
        m.update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_perplexity_uniform_equals_vocab_and_matches_mxnet():
    v, n = 50, 120
    m = LanguageModelMetrics()
    m.update_loss(n * math.log(v), n)
    r = m.result()
    assert r["perplexity"] == pytest.approx(v)
    assert r["bits_per_token"] == pytest.approx(math.log2(v))
    m.reset()
    m.update(np.zeros(n, dtype=int), np.zeros((n, v)))  # uniform logits
    assert m.result()["perplexity"] == pytest.approx(v)

    rng = np.random.RandomState(1)
    ours, ref = LanguageModelMetrics(), mx.metric.Perplexity(ignore_label=None)
    for _ in range(3):
        labels = rng.randint(0, 7, size=(4, 6))
        logits = rng.randn(4, 6, 7)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        ours.update(labels, mx.nd.array(logits, dtype="float64"))
        ref.update([mx.nd.array(labels.reshape(-1))],
                   [mx.nd.array(probs.reshape(-1, 7), dtype="float64")])
    assert ours.result()["perplexity"] == pytest.approx(ref.get()[1], rel=1e-9)
    assert ours.result()["count"] == 72


def test_lm_mask_and_empty():
    m = LanguageModelMetrics()
    assert math.isnan(m.result()["perplexity"])
    logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]]))
    m.update(np.array([[0, 1]]), logits, mask=np.array([[1, 0]]))
    assert m.result()["perplexity"] == pytest.approx(2.0)
    m.update_loss(1e6, 1)
    assert m.result()["perplexity"] == math.inf


def test_directions_and_is_better():
    assert METRIC_DIRECTIONS["accuracy"] == "max" and METRIC_DIRECTIONS["perplexity"] == "min"
    assert metric_direction("valid_macro_f1") == "max"
    assert is_better("accuracy", 0.9, 0.8) and not is_better("accuracy", 0.8, 0.8)
    assert is_better("valid_loss", 1.0, 2.0) and not is_better("rmse", 3.0, 2.0)
    assert is_better("loss", 1.0, None) and is_better("loss", 1.0, float("nan"))
    assert not is_better("loss", float("nan"), 1.0)
    assert not is_better("accuracy", 0.805, 0.8, min_delta=0.01)
    with pytest.raises(ConfigError, match="bleu"):
        is_better("bleu", 1.0, 0.0)


def test_baselines():
    assert majority_baseline([1, 1, 2, 0], [1, 2, 1, 1]) == 0.75
    assert majority_baseline(np.array([3, 2, 2, 3]), [2, 3]) == 0.5  # tie -> smallest label
    assert unigram_perplexity([], [0, 1, 2], 10) == pytest.approx(10.0)
    # counts [2, 0, 1] over V=3, N=3: p = [3/6, 1/6, 2/6]
    expected = math.exp(-(math.log(3 / 6) + math.log(1 / 6)) / 2)
    assert unigram_perplexity([0, 0, 2], [0, 1], 3) == pytest.approx(expected)
    with pytest.raises(ValueError):
        unigram_perplexity([0, 5], [0], 3)


def test_majority_baseline_of_a_run_reads_the_training_labels_not_the_loader():
    from mxlstm import runs
    from mxlstm.tasks import default_config, prepare

    prepared = prepare(default_config("digits"))

    class NotIterated:
        def __iter__(self):
            raise AssertionError("the augmented training loader was iterated")

    loader, prepared.train_loader = prepared.train_loader, NotIterated()
    from_labels = runs.baseline(prepared)["majority_accuracy"]
    prepared.train_loader, prepared.train_labels = loader, None
    assert from_labels == runs.baseline(prepared)["majority_accuracy"]
    assert abs(from_labels - 36 / 359) < 1e-12  # digits test split: 36 of the majority label

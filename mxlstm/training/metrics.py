"""Evaluation metrics accumulated over batches, computed with numpy.

Every metric object has ``update(...)`` (called per batch with NDArrays or numpy arrays),
``update_loss(total, count)`` (a summed loss and the number of items it sums over),
``result() -> dict`` (plain python numbers, JSON-ready; NaN where nothing was seen yet) and
``reset()``.  ``METRIC_DIRECTIONS`` / :func:`is_better` say which way a metric improves;
:func:`majority_baseline` and :func:`unigram_perplexity` give trivial baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mxlstm.errors import ConfigError

METRIC_DIRECTIONS = {
    "accuracy": "max", "macro_f1": "max", "loss": "min", "mse": "min", "mae": "min",
    "rmse": "min", "perplexity": "min", "nll": "min", "bits_per_token": "min",
}
_SPLIT_PREFIXES = ("train_", "valid_", "val_", "dev_", "test_")
_NAN = float("nan")


def _np(x) -> np.ndarray:
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def _int_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = labels.astype(np.int64)
    if np.any(out != labels):
        raise ValueError("labels must be whole numbers")
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        bad = out[(out < 0) | (out >= num_classes)][0]
        raise ValueError(f"label {bad} outside [0, {num_classes})")
    return out


def _flatten_masked(labels, scores, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Check ``labels (N,) | (N, T)`` against ``scores (..., K)``; return flat masked pairs."""
    labels, scores = _np(labels), _np(scores)
    if scores.ndim >= 2 and labels.shape == scores.shape[:-1] + (1,):
        labels = labels[..., 0]  # gluon-style (N, 1) labels
    if scores.ndim < 2 or labels.shape != scores.shape[:-1]:
        raise ValueError(f"labels of shape {labels.shape} do not fit {name} of shape "
                         f"{scores.shape}: expected (N,) with (N, K) or (N, T) with (N, T, K)")
    if mask is not None:
        mask = _np(mask)
        if mask.shape != labels.shape:
            raise ValueError(f"mask of shape {mask.shape} does not fit labels of shape "
                             f"{labels.shape}")
    labels, scores = labels.reshape(-1), scores.reshape(-1, scores.shape[-1])
    if mask is not None:
        keep = mask.reshape(-1) != 0
        labels, scores = labels[keep], scores[keep]
    return labels, scores


class _LossMixin:
    _loss_sum: float
    _loss_count: float

    def update_loss(self, total: float, count: float) -> None:
        """Add a loss summed over ``count`` items (``result()["loss"]`` is the mean)."""
        self._loss_sum += float(_np(total).sum())
        self._loss_count += float(_np(count).sum())

    def _loss(self) -> float:
        return self._loss_sum / self._loss_count if self._loss_count else _NAN


CONFUSION_MAX_CLASSES = 50


class ClassificationMetrics(_LossMixin):
    """Accuracy, macro F1 and (for K <= 50) the confusion matrix of a K-class classifier.

    Memory is O(K): per-class counts of true labels, predictions and hits. The K x K
    confusion matrix is kept (``self.confusion``) and reported only when
    ``K <= CONFUSION_MAX_CLASSES`` (50); for more classes ``self.confusion`` is None and
    ``result()`` has no ``confusion`` key (10,000 classes would make it 800 MB in memory
    and a gigabyte of JSON). Accuracy is hits / total; the tests check it against
    ``mx.metric.Accuracy``.  Macro F1 is the mean over classes of
    ``F1 = 2 TP / (2 TP + FP + FN)``; classes never present and never predicted (``0/0``)
    are left out of the mean, not counted as 0 or 1.

    Parameters
    ----------
    num_classes : int
        K.
    label_names : sequence of str, optional
        Class names (kept as ``self.label_names`` for reports and plots).
    """

    def __init__(self, num_classes: int, label_names: Sequence[str] | None = None) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        if label_names is not None and len(label_names) != self.num_classes:
            raise ValueError(f"{len(label_names)} label names for {num_classes} classes")
        self.label_names = ([str(n) for n in label_names] if label_names is not None
                            else [str(i) for i in range(self.num_classes)])
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        k = self.num_classes
        self.confusion = (np.zeros((k, k), dtype=np.int64) if k <= CONFUSION_MAX_CLASSES
                          else None)
        self._true = np.zeros(k, dtype=np.int64)
        self._pred = np.zeros(k, dtype=np.int64)
        self._hits = np.zeros(k, dtype=np.int64)
        self._loss_sum, self._loss_count = 0.0, 0.0

    def update(self, labels, logits, mask=None) -> None:
        """Add a batch.

        Parameters
        ----------
        labels : (N,) or (N, T) int
            True classes (``(N, 1)`` is accepted for ``(N,)``).
        logits : (N, K) or (N, T, K)
            Scores; the predicted class is their argmax (probabilities work as well).
        mask : (N, T), optional
            Nonzero where a step counts (padding excluded).
        """
        labels, logits = _flatten_masked(labels, logits, mask, "logits")
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[-1]} classes, expected "
                             f"{self.num_classes}")
        k = self.num_classes
        true = _int_labels(labels, k)
        pred = logits.argmax(axis=-1)
        self._true += np.bincount(true, minlength=k)
        self._pred += np.bincount(pred, minlength=k)
        self._hits += np.bincount(true[true == pred], minlength=k)
        if self.confusion is not None:
            self.confusion += np.bincount(true * k + pred, minlength=k * k).reshape(k, k)

    def result(self) -> dict:
        """``loss`` (if given), ``accuracy``, ``macro_f1``, ``count`` and, for K <= 50,
        ``confusion`` (list of lists, rows = true class, columns = predicted class)."""
        total = int(self._true.sum())
        tp = self._hits.astype(np.float64)
        denom = self._pred + self._true  # 2 TP + FP + FN
        active = denom > 0
        out: dict = {"loss": self._loss()} if self._loss_count else {}
        out["accuracy"] = float(tp.sum() / total) if total else _NAN
        out["macro_f1"] = float(np.mean(2 * tp[active] / denom[active])) if active.any() else _NAN
        out["count"] = total
        if self.confusion is not None:
            out["confusion"] = self.confusion.tolist()
        return out


class RegressionMetrics(_LossMixin):
    """Mean squared error, mean absolute error and their root (``rmse = sqrt(mse)``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._sse = self._sae = 0.0
        self._n = 0
        self._loss_sum, self._loss_count = 0.0, 0.0

    def update(self, targets, predictions, mask=None) -> None:
        """Add a batch: ``targets`` and ``predictions`` of the same shape (size-1 axes are
        ignored, so ``(N,)`` fits ``(N, 1)``); optional ``mask`` of that shape, nonzero =
        counts."""
        t = np.squeeze(_np(targets)).astype(np.float64)
        p = np.squeeze(_np(predictions)).astype(np.float64)
        if t.shape != p.shape:
            raise ValueError(f"targets of shape {_np(targets).shape} do not fit predictions "
                             f"of shape {_np(predictions).shape}")
        err = (p - t).reshape(-1)
        if mask is not None:
            keep = np.squeeze(_np(mask)).reshape(-1) != 0
            if keep.size != err.size:
                raise ValueError(f"mask of shape {_np(mask).shape} does not fit targets")
            err = err[keep]
        self._sse += float(np.dot(err, err))
        self._sae += float(np.abs(err).sum())
        self._n += err.size

    def result(self) -> dict:
        """``loss`` (if given), ``mse``, ``mae``, ``rmse`` and ``count``."""
        out: dict = {"loss": self._loss()} if self._loss_count else {}
        mse = self._sse / self._n if self._n else _NAN
        out.update(mse=mse, mae=self._sae / self._n if self._n else _NAN,
                   rmse=math.sqrt(mse), count=self._n)
        return out


class LanguageModelMetrics(_LossMixin):
    """Per-token negative log-likelihood (nats), perplexity ``exp(nll)`` and
    ``bits_per_token = nll / ln 2``, from summed NLLs (``update_loss``) or logits (``update``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._loss_sum, self._loss_count = 0.0, 0.0

    def update(self, labels, logits, mask=None) -> None:
        """Add a batch of next-token ``labels (N,) | (N, T)`` with ``logits (..., V)``
        (softmax in float64) and an optional ``mask`` (nonzero = counts)."""
        labels, logits = _flatten_masked(labels, logits, mask, "logits")
        ids = _int_labels(labels, logits.shape[-1])
        z = logits.astype(np.float64)
        z = z - z.max(axis=-1, keepdims=True)
        logp = z[np.arange(len(ids)), ids] - np.log(np.exp(z).sum(axis=-1))
        self.update_loss(-float(logp.sum()), len(ids))

    def result(self) -> dict:
        """``loss`` (= ``nll``), ``nll``, ``perplexity``, ``bits_per_token`` and ``count``
        (tokens)."""
        nll = self._loss()
        try:
            ppl = math.exp(nll)
        except OverflowError:
            ppl = math.inf
        return {"loss": nll, "nll": nll, "perplexity": ppl, "bits_per_token": nll / math.log(2),
                "count": int(self._loss_count)}


def metric_direction(name: str) -> str:
    """``"max"`` or ``"min"`` for a metric name, also with a split prefix (``valid_accuracy``).

    Raises
    ------
    ConfigError
        For an unknown metric.
    """
    if name in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[name]
    for prefix in _SPLIT_PREFIXES:
        if name.startswith(prefix) and name[len(prefix):] in METRIC_DIRECTIONS:
            return METRIC_DIRECTIONS[name[len(prefix):]]
    raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRIC_DIRECTIONS)}")


def is_better(metric_name: str, new: float | None, old: float | None,
              min_delta: float = 0.0) -> bool:
    """True if ``new`` strictly improves on ``old`` by more than ``min_delta``.

    A NaN / None ``new`` is never better; anything is better than a NaN / None ``old``.
    """
    direction = metric_direction(metric_name)
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new > old + min_delta if direction == "max" else new < old - min_delta


def majority_baseline(train_labels, test_labels) -> float:
    """Test accuracy of always predicting the most frequent training label (ties: the
    smallest label)."""
    train, test = _np(train_labels).reshape(-1), _np(test_labels).reshape(-1)
    if train.size == 0 or test.size == 0:
        raise ValueError("majority_baseline needs non-empty train and test labels")
    values, counts = np.unique(train, return_counts=True)
    return float(np.mean(test == values[np.argmax(counts)]))


def unigram_perplexity(train_ids, test_ids, vocab_size: int) -> float:
    """Perplexity on ``test_ids`` of a unigram model fitted on ``train_ids``.

    Add-one (Laplace) smoothing: ``p(w) = (count(w) + 1) / (N + V)`` for all ``V`` ids, so
    unseen ids get a nonzero probability and an empty training set gives the uniform model
    (perplexity ``V``).
    """
    v = int(vocab_size)
    if v < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    train = _int_labels(_np(train_ids).reshape(-1), v)
    test = _int_labels(_np(test_ids).reshape(-1), v)
    if test.size == 0:
        raise ValueError("unigram_perplexity needs non-empty test ids")
    log_p = np.log(np.bincount(train, minlength=v) + 1.0) - math.log(train.size + v)
    return float(math.exp(-log_p[test].mean()))

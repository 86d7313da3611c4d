"""Reference models a report shows beside the LSTM, fitted on the same training split.

Numpy only (1-NN DTW uses the optional ``dtaidistance`` extra when it is installed):

* series classification: majority class, 1-NN Euclidean and 1-NN DTW (a warping band of
  10% of the length, which also keeps long series affordable) on univariate series
  z-normalised per series (multivariate: channels standardised on the training split),
  the UCR/UEA archive's standard baselines;
* text classification: majority class and a bag-of-words logistic regression;
* regression: the training mean and a ridge regression on the flattened series (its
  penalty chosen by leave-one-out error on the training split).

Series are lists of ``(T_i, C)`` float arrays; token sequences lists of ``(T_i,)`` ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mxlstm.preprocess import STD_FLOOR  # the normalisation rule training uses

ADAM_EPSILON = 1.0e-8  # the optimiser's epsilon of the logistic baseline (not a std floor)

DTW_SKIPPED = "skipped (pip install dtaidistance)"
DTW_BAND = 0.1  # warping window: 10% of the series length (Ratanamahatana & Keogh 2004)
RIDGE_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def znormalize(series: np.ndarray, eps: float = STD_FLOOR) -> np.ndarray:
    """``(T, C)`` -> each channel shifted to mean 0 and scaled to std 1 (constant channels
    only shifted)."""
    x = np.asarray(series, np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > eps, std, 1.0)


def majority_accuracy(train_y: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent training class (ties: smallest)."""
    values, counts = np.unique(np.asarray(train_y), return_counts=True)
    return float(np.mean(np.asarray(test_y) == values[np.argmax(counts)]))


def euclidean_matrix(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``(M, L)`` and ``(N, L)`` flattened series -> ``(M, N)`` squared distances."""
    a, b = np.asarray(test, np.float64), np.asarray(train, np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def dtw_distance(a: np.ndarray, b: np.ndarray, window: int | None = None) -> float:
    """Exact DTW between ``a (T, C)`` and ``b (S, C)``: the square root of the least sum of
    squared per-step Euclidean distances along a warping path (the value ``dtaidistance``
    computes). ``window``: steps ``j`` of ``b`` allowed for step ``i`` of ``a`` are
    ``i - max(0, T - S) - window < j < i + max(0, S - T) + window`` (dtaidistance's band);
    None = no band. O(T*S); for tests and small data."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    rows, cols = len(a), len(b)
    window = max(rows, cols) if window is None else window
    acc = np.full((rows + 1, cols + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(rows):
        low = max(0, i - max(0, rows - cols) - window + 1)
        high = min(cols, i + max(0, cols - rows) + window)
        for j in range(low, high):
            acc[i + 1, j + 1] = cost[i, j] + min(acc[i, j + 1], acc[i + 1, j], acc[i, j])
    return float(np.sqrt(acc[-1, -1]))


def dtw_window(lengths: Sequence[int], fraction: float = DTW_BAND) -> int:
    """The Sakoe-Chiba band of the DTW baseline: ``fraction`` of the longest series (at
    least 1 step)."""
    return max(1, int(np.ceil(fraction * max(lengths))))


def _dtaidistance():
    try:
        from dtaidistance import dtw, dtw_ndim
    except ImportError:
        return None
    return dtw, dtw_ndim


def dtw_matrix(test: Sequence[np.ndarray], train: Sequence[np.ndarray],
               window: int | None = None, exact: bool = False) -> np.ndarray | None:
    """``(M, N)`` DTW distances between ``test`` and ``train`` series (each ``(T_i, C)``),
    with band ``window`` (None = none), by ``dtaidistance`` (its C library) or, with
    ``exact=True``, :func:`dtw_distance`; None when ``dtaidistance`` is missing and
    ``exact`` is False."""
    if exact:
        return np.array([[dtw_distance(a, b, window) for b in train] for a in test])
    lib = _dtaidistance()
    if lib is None:
        return None
    dtw, dtw_ndim = lib
    series = [np.ascontiguousarray(s, np.float64) for s in list(test) + list(train)]
    block = ((0, len(test)), (len(test), len(series)))
    options = {"block": block, "window": window}
    if series[0].shape[1] == 1:
        full = dtw.distance_matrix_fast([s[:, 0] for s in series], **options)
    else:
        full = dtw_ndim.distance_matrix_fast(series, **options)
    return np.asarray(full)[:len(test), len(test):]


def nearest_accuracy(distances: np.ndarray, train_y: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy of 1-NN given ``(M, N)`` test-to-train distances (ties: first)."""
    predicted = np.asarray(train_y)[np.argmin(distances, axis=1)]
    return float(np.mean(predicted == np.asarray(test_y)))


def series_classification(train_x: Sequence[np.ndarray], train_y, test_x: Sequence[np.ndarray],
                          test_y, dtw: bool = True) -> dict:
    """Majority, 1-NN Euclidean (equal lengths only) and 1-NN DTW test accuracies, on
    univariate series z-normalised per series (the archive's convention) or multivariate
    series with channels standardised on the training split."""
    if np.asarray(train_x[0]).reshape(len(train_x[0]), -1).shape[1] == 1:
        train_z = [znormalize(s) for s in train_x]
        test_z = [znormalize(s) for s in test_x]
    else:  # multivariate: channel levels carry information; standardise channels globally
        steps = np.concatenate([np.asarray(s, np.float64) for s in train_x])
        mean, std = steps.mean(0), np.where(steps.std(0) > 1e-12, steps.std(0), 1.0)
        train_z = [(np.asarray(s, np.float64) - mean) / std for s in train_x]
        test_z = [(np.asarray(s, np.float64) - mean) / std for s in test_x]
    out: dict = {"majority_accuracy": majority_accuracy(train_y, test_y)}
    if len({len(s) for s in train_z + test_z}) == 1:
        flat = euclidean_matrix(np.stack([s.ravel() for s in test_z]),
                                np.stack([s.ravel() for s in train_z]))
        out["1nn_euclidean_accuracy"] = nearest_accuracy(flat, train_y, test_y)
    else:
        out["1nn_euclidean_accuracy"] = "skipped (series of different lengths)"
    window = dtw_window([len(s) for s in train_z + test_z])
    distances = dtw_matrix(test_z, train_z, window) if dtw else None
    out["1nn_dtw_accuracy"] = DTW_SKIPPED if distances is None else \
        nearest_accuracy(distances, train_y, test_y)
    return out


# ----------------------------------------------------------------------------- regression
def regression_scores(predicted: np.ndarray, target: np.ndarray) -> dict:
    """MSE, RMSE, MAE and R² (1 - SSE / SST over ``target``), all targets together."""
    p = np.asarray(predicted, np.float64).reshape(len(target), -1)
    t = np.asarray(target, np.float64).reshape(len(target), -1)
    mse = float(np.mean((p - t) ** 2))
    sst = float(np.sum((t - t.mean(axis=0)) ** 2))
    r2 = 1.0 - float(np.sum((p - t) ** 2)) / sst if sst > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(p - t))),
            "r2": r2}


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression ``min |y - x w - b|^2 + alpha |w|^2`` (intercept not penalised):
    ``x (N, D)``, ``y (N, K)`` -> ``(w (D, K), b (K,))``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(len(x), -1)
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def ridge_loo_error(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean squared leave-one-out error of :func:`ridge_fit` (closed form via the hat
    matrix of the centred problem)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(len(x), -1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    hat = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T)
    hat += 1.0 / len(x)  # the intercept
    residual = (y - (hat @ yc + y.mean(0))) / (1.0 - np.diag(hat))[:, None]
    return float(np.mean(residual ** 2))


def series_regression(train_x: Sequence[np.ndarray], train_y, test_x: Sequence[np.ndarray],
                      test_y) -> dict:
    """Training-mean and ridge (flattened series, features standardised on the training
    split, alpha by leave-one-out) test scores."""
    train_y = np.asarray(train_y, np.float64).reshape(len(train_x), -1)
    test_y = np.asarray(test_y, np.float64).reshape(len(test_x), -1)
    out = {"mean_predictor": regression_scores(np.broadcast_to(train_y.mean(0), test_y.shape),
                                               test_y)}
    if len({len(s) for s in list(train_x) + list(test_x)}) != 1:
        out["ridge"] = "skipped (series of different lengths)"
        return out
    xtr = np.stack([np.asarray(s, np.float64).ravel() for s in train_x])
    xte = np.stack([np.asarray(s, np.float64).ravel() for s in test_x])
    mean, std = xtr.mean(0), xtr.std(0)
    std = np.where(std > 1e-12, std, 1.0)  # features standardised on the training split
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    alpha = min(RIDGE_ALPHAS, key=lambda a: ridge_loo_error(xtr, train_y, a))
    w, b = ridge_fit(xtr, train_y, alpha)
    out["ridge"] = {**regression_scores(xte @ w + b, test_y), "alpha": alpha}
    return out


# ----------------------------------------------------------------------------- text
def bag_of_words(docs: Sequence[np.ndarray], vocab_size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse (doc, token, count) triples of token-id documents, counts scaled by
    1 / sqrt(document length)."""
    rows, cols, vals = [], [], []
    for k, doc in enumerate(docs):
        ids, counts = np.unique(np.asarray(doc, np.int64), return_counts=True)
        keep = (ids >= 0) & (ids < vocab_size)
        rows.append(np.full(int(keep.sum()), k))
        cols.append(ids[keep])
        vals.append(counts[keep] / np.sqrt(max(len(doc), 1)))
    return (np.concatenate(rows), np.concatenate(cols), np.concatenate(vals).astype(np.float64))


def _scores(triples, n_docs: int, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X @ w + b`` for the sparse ``X`` of :func:`bag_of_words`."""
    rows, cols, vals = triples
    return np.stack([np.bincount(rows, vals * w[cols, c], minlength=n_docs)
                     for c in range(w.shape[1])], axis=1) + b


def _transposed(triples, g: np.ndarray, vocab_size: int) -> np.ndarray:
    """``X.T @ g``."""
    rows, cols, vals = triples
    return np.stack([np.bincount(cols, vals * g[rows, c], minlength=vocab_size)
                     for c in range(g.shape[1])], axis=1)


def logistic_bow(train_docs: Sequence[np.ndarray], train_y, test_docs: Sequence[np.ndarray],
                 vocab_size: int, num_classes: int, iterations: int = 200, lr: float = 0.05,
                 l2: float = 1e-4) -> np.ndarray:
    """Multinomial logistic regression on bags of words, full-batch Adam from zeros;
    returns the ``(M,)`` predicted classes of ``test_docs``."""
    y = np.asarray(train_y, np.int64)
    triples = bag_of_words(train_docs, vocab_size)
    w = np.zeros((vocab_size, num_classes))
    b = np.zeros(num_classes)
    onehot = np.eye(num_classes)[y]
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    for step in range(1, iterations + 1):
        z = _scores(triples, len(y), w, b)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(y)
        gw = _transposed(triples, g, vocab_size) + l2 * w
        for k, (param, grad) in enumerate(((w, gw), (b, g.sum(0)))):
            m, v = moments[2 * k], moments[2 * k + 1]
            m[:] = 0.9 * m + 0.1 * grad
            v[:] = 0.999 * v + 0.001 * grad * grad
            scale = np.sqrt(v / (1 - 0.999 ** step)) + ADAM_EPSILON
            param -= lr * (m / (1 - 0.9 ** step)) / scale
    return np.argmax(_scores(bag_of_words(test_docs, vocab_size), len(test_docs), w, b), 1)


def text_classification(train_docs, train_y, test_docs, test_y, vocab_size: int,
                        num_classes: int) -> dict:
    """Majority and bag-of-words logistic regression test accuracies."""
    predicted = logistic_bow(train_docs, train_y, test_docs, vocab_size, num_classes)
    return {"majority_accuracy": majority_accuracy(train_y, test_y),
            "bow_logistic_accuracy": float(np.mean(predicted == np.asarray(test_y)))}


def report_baselines(data: dict | None) -> dict:
    """The baselines of a run's ``Prepared.baseline_data`` (``kind`` 'series', 'text' or
    'regression'; ``train_x``, ``train_y``, ``test_x``, ``test_y``); ``{}`` without data."""
    if not data:
        return {}
    args = (data["train_x"], data["train_y"], data["test_x"], data["test_y"])
    report = _REPORTS.get(data["kind"])
    if report is None:
        raise ValueError(f"baseline data of unknown kind {data['kind']!r}")
    return report(data, *args)


# Prepared.baseline_data["kind"] (what the data is, set by the task) -> its baselines
_REPORTS = {
    "series": lambda data, *args: series_classification(*args),
    "regression": lambda data, *args: series_regression(*args),
    "text": lambda data, *args: text_classification(*args, data["vocab_size"],
                                                    data["num_classes"]),
}

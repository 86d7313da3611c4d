"""Estimators in the style of scikit-learn and Keras over in-memory data.

==========================  ===============================  ==============================
estimator                   presets (first = default)        data
==========================  ===============================  ==============================
``SequenceClassifier``      uea, digits, vowels              ``X`` (N, T, C), (N, T) or a
                                                             list of (T_i, C); class ``y``
``SequenceRegressor``       series-regression                same ``X``; float ``y`` (N,)
``TextClassifier``          text                             a list of strings; labels
``LanguageModel``           lm                               one string (the corpus)
==========================  ===============================  ==============================

``fit`` trains with the command line's machinery into ``out`` (a run directory; a new
temporary one without it) and returns the estimator; ``valid=`` / ``test=`` give own
splits (else they are held out from the training data as ``mxlstm train --data`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mxlstm.api.datafiles import (
    class_labels,
    decode_classes,
    write_corpus,
    write_series,
    write_texts,
)
from mxlstm.api.estimator import Estimator
from mxlstm.errors import DataError


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _split(split, what: str) -> tuple:
    """``(X, y)`` or ``(X, y, lengths)`` of a ``valid=`` / ``test=`` argument."""
    if not isinstance(split, (tuple, list)) or len(split) not in (2, 3):
        raise DataError(f"{what}: expected a tuple (X, y) or (X, y, lengths)")
    return tuple(split) + (None,) * (3 - len(split))


class _Labelled(Estimator):
    """Class labels: ``classes_`` (ints when every label is a whole number), ``predict``
    = the most probable class, ``score`` = accuracy."""

    classes_: np.ndarray

    def _after_load(self) -> None:
        from mxlstm import runs

        _, meta = runs.load_run(self._require_fitted())
        self.label_names_ = list(meta["label_names"])
        self.classes_ = decode_classes(self.label_names_)

    def predict(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The most probable class of each item, from :attr:`classes_`."""
        self._require_fitted()
        return self.classes_[self.predict_proba(*args, **kwargs).argmax(axis=1)]

    def score(self, *args: Any, **kwargs: Any) -> float:
        """Test accuracy on the given data (as :meth:`evaluate`)."""
        return float(self.evaluate(*args, **kwargs)["accuracy"])


class SequenceClassifier(_Labelled):
    """An LSTM classifier of numeric series (tasks ``uea``, ``digits``, ``vowels``); see
    ``docs/python.md``."""

    tasks = ("uea", "digits", "vowels")

    def fit(self, X: Any, y: Any, lengths: Any = None, *, valid: tuple | None = None,
            test: tuple | None = None, out: str | Path | None = None, resume: bool = False,
            extend_epochs: int = 0) -> SequenceClassifier:
        """Train on series ``X`` (N, T, C) / (N, T) / list of (T_i, C) with class labels
        ``y`` (N,); ``lengths`` (N,) for padded ``X``."""
        indices, names = class_labels(y)

        def write(folder: Path) -> dict[str, str]:
            keys = {"data.path": write_series(folder / "train.npz", X, indices, lengths,
                                              names)}
            for key, split, name in (("data.valid_path", valid, "valid"),
                                     ("data.test_path", test, "test")):
                if split is not None:
                    xs, ys, ls = _split(split, name)
                    keys[key] = write_series(folder / f"{name}.npz", xs,
                                             _labels_as(names, ys, name), ls, names, name)
            return {k: str(v) for k, v in keys.items()}

        return self._fit(write, out, resume, extend_epochs)

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Class probabilities ``(N, K)`` (columns in the order of :attr:`classes_`)."""
        self._require_fitted()
        return _softmax(self._outputs(lambda d: write_series(d / "x.npz", X, None, lengths,
                                                             self.label_names_)))

    def evaluate(self, X: Any, y: Any, lengths: Any = None) -> dict:
        """Test metrics (accuracy, macro F1, confusion, ...) of ``X`` against ``y``."""
        self._require_fitted()
        return self._evaluate(lambda d: write_series(
            d / "x.npz", X, _labels_as(self.label_names_, y, "y"), lengths,
            self.label_names_))


def _labels_as(names: list[str], y: Any, what: str) -> np.ndarray:
    """``y`` as indices into ``names`` (the trained classes); unknown labels are errors."""
    values = np.asarray(y).reshape(-1)
    if values.dtype.kind == "f" and np.isfinite(values).all() and \
            (values == np.round(values)).all():
        values = values.astype(np.int64)
    index = {n: k for k, n in enumerate(names)}
    unknown = [v for v in values.tolist() if str(v) not in index]
    if unknown:
        raise DataError(f"{what}: label {unknown[0]!r} does not occur in training (known: "
                        f"{', '.join(names)})")
    return np.array([index[str(v)] for v in values.tolist()], np.int64)


class SequenceRegressor(Estimator):
    """An LSTM regressor of numeric series (task ``series-regression``); targets ``(N,)``."""

    tasks = ("series-regression",)

    def fit(self, X: Any, y: Any, lengths: Any = None, *, valid: tuple | None = None,
            test: tuple | None = None, out: str | Path | None = None, resume: bool = False,
            extend_epochs: int = 0) -> SequenceRegressor:
        """Train on series ``X`` with real-valued targets ``y`` (N,)."""
        def write(folder: Path) -> dict[str, str]:
            keys = {"data.path": write_series(folder / "train.npz", X, _targets(y), lengths)}
            for key, split, name in (("data.valid_path", valid, "valid"),
                                     ("data.test_path", test, "test")):
                if split is not None:
                    xs, ys, ls = _split(split, name)
                    keys[key] = write_series(folder / f"{name}.npz", xs, _targets(ys), ls,
                                             what=name)
            return {k: str(v) for k, v in keys.items()}

        return self._fit(write, out, resume, extend_epochs)

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Predicted targets ``(N,)`` in the units of ``y``."""
        self._require_fitted()
        out = self._outputs(lambda d: write_series(d / "x.npz", X, None, lengths))
        return out.reshape(len(out), -1)[:, 0].astype(np.float64)

    def evaluate(self, X: Any, y: Any, lengths: Any = None) -> dict:
        """Test metrics (mse, rmse, mae, r2) of ``X`` against ``y``."""
        self._require_fitted()
        return self._evaluate(lambda d: write_series(d / "x.npz", X, _targets(y), lengths))

    def score(self, X: Any, y: Any, lengths: Any = None) -> float:
        """R² on the given data."""
        return float(self.evaluate(X, y, lengths)["r2"])


def _targets(y: Any) -> np.ndarray:
    values = np.asarray(y, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise DataError("y: non-finite target")
    return values


class TextClassifier(_Labelled):
    """An LSTM text classifier (task ``text``): ``fit(texts, labels)`` on lists of
    strings; the vocabulary is built on the training split."""

    tasks = ("text",)
    data_keys = {"data.text_field": "text", "data.label_field": "label"}  # write_texts's

    def fit(self, texts: list[str], labels: Any, *, valid: tuple | None = None,
            test: tuple | None = None, out: str | Path | None = None, resume: bool = False,
            extend_epochs: int = 0) -> TextClassifier:
        """Train on ``texts`` with their ``labels`` (strings or numbers)."""
        def write(folder: Path) -> dict[str, str]:
            keys = {"data.path": write_texts(folder / "train.jsonl", texts, labels)}
            for key, split, name in (("data.valid_path", valid, "valid"),
                                     ("data.test_path", test, "test")):
                if split is not None:
                    xs, ys, _ = _split(split, name)
                    keys[key] = write_texts(folder / f"{name}.jsonl", xs, ys, name)
            return {k: str(v) for k, v in keys.items()}

        return self._fit(write, out, resume, extend_epochs)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities ``(N, K)`` of each text."""
        self._require_fitted()
        dummy = [self.label_names_[0]] * len(texts)
        return _softmax(self._outputs(lambda d: write_texts(d / "x.jsonl", texts, dummy)))

    def evaluate(self, texts: list[str], labels: Any) -> dict:
        """Test metrics (accuracy, macro F1, confusion, ...) against ``labels``."""
        self._require_fitted()
        return self._evaluate(lambda d: write_texts(d / "x.jsonl", texts, labels))


class LanguageModel(Estimator):
    """An LSTM language model (task ``lm``) trained on one corpus string (the Gluon block
    is :class:`mxlstm.blocks.models.LanguageModel`)."""

    tasks = ("lm",)

    def fit(self, corpus: str, *, valid: str | None = None, test: str | None = None,
            out: str | Path | None = None, resume: bool = False,
            extend_epochs: int = 0) -> LanguageModel:
        """Train on ``corpus`` (cut 90/5/5 in reading order unless ``valid`` / ``test``
        texts are given)."""
        def write(folder: Path) -> dict[str, str]:
            keys = {"data.path": write_corpus(folder / "train.txt", corpus)}
            for key, text, name in (("data.valid_path", valid, "valid"),
                                    ("data.test_path", test, "test")):
                if text is not None:
                    keys[key] = write_corpus(folder / f"{name}.txt", text)
            return {k: str(v) for k, v in keys.items()}

        return self._fit(write, out, resume, extend_epochs)

    def _after_load(self) -> None:
        from mxlstm import runs
        from mxlstm.tasks.spec import TaskSpec

        _, meta = runs.load_run(self._require_fitted())
        spec = TaskSpec.from_meta(meta)
        self.vocabulary_ = spec.idx_to_token
        self._token_index = {t: k for k, t in enumerate(self.vocabulary_)}
        self.level_ = spec.input.tokenizer or "word"
        self.unk_id_ = spec.input.unk_id or 0

    def evaluate(self, text: str) -> dict:
        """Perplexity (and NLL per token) of ``text``."""
        self._require_fitted()
        return self._evaluate(lambda d: write_corpus(d / "x.txt", text))

    def predict_proba(self, context: str) -> np.ndarray:
        """The next-token distribution ``(V,)`` after ``context`` (over :attr:`vocabulary_`)."""
        import mxnet as mx

        from mxlstm.data.text import tokenize

        prepared, _, _ = self._model()
        tokens = tokenize(context, self.level_)
        if not tokens:
            raise DataError("context: no tokens (empty text)")
        ids = mx.nd.array([[self._token_index.get(t, self.unk_id_) for t in tokens]],
                          dtype="int32")
        model = prepared.model
        logits, _ = model(ids, model.begin_state(1, ctx=mx.cpu()))
        return _softmax(logits.asnumpy()[0, -1])

    def predict(self, context: str, top_k: int = 1) -> list[str]:
        """The ``top_k`` most likely next tokens after ``context``, most likely first."""
        order = np.argsort(-self.predict_proba(context), kind="stable")[:max(1, top_k)]
        return [self.vocabulary_[k] for k in order]

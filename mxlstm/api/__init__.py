"""The Python API: estimators in the style of scikit-learn and Keras over in-memory data,
on the command line's machinery (presets, Fitter, run directory, checkpoints, resume).

``mxlstm.SequenceClassifier(preset="uea", epochs=20).fit(X, y, out="runs/x")``, then
``predict`` / ``predict_proba`` / ``evaluate`` / ``score`` / ``export``;
``mxlstm.load(run_dir)`` gives back the estimator of any trained run. See ``docs/python.md``.
"""

from __future__ import annotations

from pathlib import Path

from mxlstm.api.estimator import Estimator, attach
from mxlstm.api.estimators import (
    LanguageModel,
    SequenceClassifier,
    SequenceRegressor,
    TextClassifier,
)
from mxlstm.errors import ModelFileError


def load(run_dir: str | Path) -> Estimator:
    """The estimator of the trained run in ``run_dir`` (made by ``fit`` or ``mxlstm
    train``), ready to predict, evaluate and export."""
    from mxlstm import runs
    from mxlstm.tasks.spec import TaskSpec

    cfg, meta = runs.load_run(run_dir)
    spec = TaskSpec.from_meta(meta)
    answer = spec.kind.answer
    if answer == "labels":
        cls = TextClassifier if spec.input.tokens else SequenceClassifier
    elif answer == "values":
        cls = SequenceRegressor
    elif answer == "tokens":
        cls = LanguageModel
    else:
        raise ModelFileError(f"{run_dir}: a {spec.kind.name} model (task {cfg.task}) has no "
                             f"Python estimator; use mxlstm predict on its export")
    estimator = cls()
    estimator.preset = cfg.task
    return attach(estimator, run_dir)


__all__ = ["Estimator", "LanguageModel", "SequenceClassifier", "SequenceRegressor",
           "TextClassifier", "load"]

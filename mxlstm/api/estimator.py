"""The machinery every Python estimator shares: a configuration from a preset and keyword
arguments, ``fit`` into a run directory (the command line's ``mxlstm train``: same presets,
Fitter, checkpoints, resume rule, lock and report), model outputs on new data through the
task's own evaluation pipeline, ``evaluate`` and ``export``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mxlstm.api.options import config_overrides
from mxlstm.errors import ConfigError, DataError

_DATA_DIR = "data"  # the run directory's copy of the in-memory data


class Estimator:
    """Base of :class:`SequenceClassifier`, :class:`SequenceRegressor`,
    :class:`TextClassifier` and :class:`LanguageModel`.

    ``preset``: the task whose preset and data handling are used (``tasks``: the ones this
    estimator accepts); keyword arguments set configuration keys by their short name
    (``epochs=20``, ``hidden_size=64``, ``model__dropout=0.2``) or ``config={"section.key":
    value}``. ``progress`` (``auto`` | ``on`` | ``off``) and ``quiet`` as in ``mxlstm train``.
    """

    tasks: tuple[str, ...] = ()
    data_keys: dict[str, str] = {}  # keys the written data files need (e.g. field names)

    def __init__(self, preset: str | None = None, *, config: dict | None = None,
                 progress: str = "auto", quiet: bool = False, **settings: Any) -> None:
        preset = preset or self.tasks[0]
        if preset not in self.tasks:
            raise ConfigError(f"{type(self).__name__}: preset {preset!r} is not one of "
                              f"{', '.join(self.tasks)}")
        self.preset = preset
        self.settings = config_overrides(settings, config)
        self.progress, self.quiet = progress, quiet
        self.run_dir_: Path | None = None
        self.report_: dict | None = None
        self._loaded = None  # (prepared, cfg, meta) of the best checkpoint

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        where = f", run_dir={str(self.run_dir_)!r}" if self.run_dir_ else ""
        return f"{type(self).__name__}(preset={self.preset!r}{', ' if keys else ''}{keys}{where})"

    # -- scikit-learn conventions ----------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {"preset": self.preset, "config": dict(self.settings),
                "progress": self.progress, "quiet": self.quiet}

    def set_params(self, **params: Any) -> Estimator:
        for name in ("preset", "progress", "quiet"):
            if name in params:
                setattr(self, name, params.pop(name))
        self.settings.update(config_overrides(params, params.pop("config", None)))
        return self

    # -- training --------------------------------------------------------------------------
    def config(self, data: dict[str, str] | None = None):
        """The effective :class:`~mxlstm.config.RunConfig` (preset < settings < data files)."""
        from mxlstm.tasks import user_config

        layers = [(self.settings, f"{type(self).__name__} settings")]
        if data:
            layers.append((data, "fit data"))
        return user_config(self.preset, layers=layers)

    def _fit(self, write: Callable[[Path], dict[str, str]], out: str | Path | None,
             resume: bool, extend_epochs: int) -> Estimator:
        """Write the data with ``write(data_dir) -> {"data.path": ...}`` and train."""
        from mxlstm import runs
        from mxlstm.training.rundir import run_status

        self.config()  # bad settings are refused before anything is written
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"mxlstm-"
                                                                           f"{self.preset}-"))
        status = run_status(out) if out.is_dir() else None
        if status is not None and status.started and not resume:
            raise ConfigError(f"{out} already holds a run; fit(..., resume=True) continues "
                              f"it, or choose another out")
        data_dir = out / _DATA_DIR
        with tempfile.TemporaryDirectory() as scratch:
            keys = write(Path(scratch))
            if resume and data_dir.is_dir():
                _require_same_data(Path(scratch), data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            for file in Path(scratch).iterdir():  # /tmp may be another file system
                shutil.move(str(file), str(data_dir / file.name))
        data = {k: str((data_dir / Path(v).name).resolve()) for k, v in keys.items()}
        data.update(self.data_keys)
        cfg = self.config(data)
        explicit = [(self.settings, "settings"), (data, "fit data")]
        self.report_ = runs.train(cfg, out, resume=resume, extend_epochs=extend_epochs,
                                  explicit=explicit, progress=self.progress, quiet=self.quiet)
        self.run_dir_ = out
        self._loaded = None
        self._after_load()
        return self

    def _after_load(self) -> None:
        """Set the fitted attributes (``classes_``, ...) from the run directory."""

    # -- a trained model -------------------------------------------------------------------
    def _require_fitted(self) -> Path:
        if self.run_dir_ is None:
            raise ConfigError(f"this {type(self).__name__} is not fitted yet: call fit(...) "
                              f"or mxlstm.load(run_dir)")
        return self.run_dir_

    def _model(self):
        """``(prepared, cfg, meta)`` of the best checkpoint, loaded once."""
        from mxlstm import runs

        if self._loaded is None:
            self._loaded = runs.load_model(self._require_fitted())
        return self._loaded

    def _outputs(self, write: Callable[[Path], Path]) -> np.ndarray:
        """The model's first output on the data ``write(dir)`` puts in a file, in order:
        read, checked and preprocessed exactly as ``mxlstm evaluate --data`` does."""
        import mxnet as mx

        from mxlstm import tasks
        from mxlstm.config import apply_overrides

        prepared, cfg, meta = self._model()
        with tempfile.TemporaryDirectory() as scratch:
            path = str(write(Path(scratch)))
            cfg = apply_overrides(cfg, {"data.path": path, "data.test_path": path,
                                        "data.valid_path": ""}, "predict")
            loader = tasks.prepare(cfg, artefacts=meta).test_loader
            objective, model = prepared.objective, prepared.model
            objective.begin_epoch([mx.cpu()])
            ctx = mx.cpu()
            outputs = [objective.forward(model, tuple(b.as_in_context(ctx) for b in batch),
                                         0)[1].asnumpy() for batch in loader]
        return np.concatenate(outputs)

    def _evaluate(self, write: Callable[[Path], Path]) -> dict:
        from mxlstm import runs

        with tempfile.TemporaryDirectory() as scratch:
            path = str(write(Path(scratch)))
            return runs.evaluate(self._require_fitted(), path)["test"]

    def export(self, prefix: str | Path, onnx: bool = False, int8: bool = False,
               streaming: bool = False, fixed_length: bool = False) -> dict:
        """``mxlstm export``: ``PREFIX-symbol.json``, ``-0000.params``, ``-meta.json`` (and
        ``PREFIX.onnx`` with ``onnx``); returns the export's meta dict."""
        from mxlstm.deploy import export_model, export_onnx

        if int8 and not onnx:
            raise ConfigError("int8 quantizes the ONNX graph: give it with onnx=True")
        meta = export_model(self._require_fitted(), prefix, streaming=streaming,
                            fixed_length=fixed_length)
        if onnx:
            meta["onnx"] = export_onnx(prefix, model_dir=self.run_dir_, int8=int8)
        return meta


def _require_same_data(new: Path, old: Path) -> None:
    """A resumed fit must see the data the run was started on."""
    for file in new.iterdir():
        recorded = old / file.name
        if recorded.is_file() and recorded.read_bytes() != file.read_bytes():
            raise DataError(f"the data differ from the data this run was trained on "
                            f"({recorded}); fit a new run (another out) instead of resuming")


def attach(estimator: Estimator, run_dir: str | Path) -> Estimator:
    """``estimator`` bound to the trained run in ``run_dir`` (as :func:`mxlstm.load`)."""
    from mxlstm import runs
    from mxlstm.training.resume import read_json

    run_dir = Path(run_dir)
    estimator._loaded = runs.load_model(run_dir)  # a damaged run is refused in one line
    estimator.run_dir_ = run_dir
    if (run_dir / "report.json").is_file():
        estimator.report_ = read_json(run_dir / "report.json", run_dir)
    estimator._after_load()
    return estimator

"""What the fit loop does after each epoch, as small swappable objects (the Keras
callbacks / MXNet estimator handlers pattern): ``Fitter(..., callbacks=[...])``.

Each callback's :meth:`Callback.on_epoch_end` gets the fitter, the training state (whose
``best`` / ``best_epoch`` / ``bad_epochs`` the fitter has just updated, and whose
``history`` already ends with this epoch's record) and that record. They run in list
order; :func:`default_callbacks` gives the order the configuration asks for.
"""

from __future__ import annotations

import mxnet as mx

from mxlstm.config import TrainConfig
from mxlstm.errors import TrainingError, error_reason
from mxlstm.training.checkpoint import prune_checkpoints, save_checkpoint


class Callback:
    """Base class: override :meth:`on_epoch_end`."""

    def on_epoch_end(self, fitter, state: dict, record: dict) -> None:
        """Called once per finished epoch (``state["epoch"]`` is its 1-based number)."""


def improved(state: dict) -> bool:
    """This epoch is the best so far."""
    return state["best_epoch"] == state["epoch"]


class PlateauDecay(Callback):
    """Multiply the learning rate by ``factor`` after every epoch that did not improve
    the monitored metric (``train.schedule=plateau``)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def on_epoch_end(self, fitter, state: dict, record: dict) -> None:
        if not improved(state):
            fitter.trainer.set_learning_rate(fitter.trainer.learning_rate * self.factor)


class EarlyStopping(Callback):
    """Stop (``state["stopped_early"]``) after ``patience`` epochs without improvement."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, fitter, state: dict, record: dict) -> None:
        state["stopped_early"] = state["bad_epochs"] >= self.patience


class Checkpointing(Callback):
    """Write ``best`` (when this epoch is the best) and then ``epoch-NNNN``, which the
    ``latest`` pointer names; older epoch checkpoints are removed. A failed write raises
    TrainingError and keeps the checkpoints saved before."""

    def on_epoch_end(self, fitter, state: dict, record: dict) -> None:
        tag = f"epoch-{state['epoch']:04d}"
        checkpoints = fitter.run_dir / "checkpoints"
        for name in (["best"] if improved(state) else []) + [tag]:
            try:
                save_checkpoint(fitter.run_dir, name, fitter.model, fitter.trainer, state,
                                fitter.checkpoint_files)
            except (OSError, mx.base.MXNetError) as err:  # e.g. disk full
                raise TrainingError(
                    f"{checkpoints / name}: cannot save the checkpoint of epoch "
                    f"{state['epoch']} ({error_reason(err, checkpoints)}); the checkpoints "
                    f"saved before are kept") from None
        prune_checkpoints(fitter.run_dir, keep={tag, "best"})


def default_callbacks(cfg: TrainConfig) -> list[Callback]:
    """Plateau decay (``schedule=plateau``), early stopping (``early_stopping > 0``), then
    checkpointing: the callbacks of every ``mxlstm train`` run."""
    callbacks: list[Callback] = []
    if cfg.schedule == "plateau":
        callbacks.append(PlateauDecay(cfg.decay_factor))
    if cfg.early_stopping:
        callbacks.append(EarlyStopping(cfg.early_stopping))
    callbacks.append(Checkpointing())
    return callbacks

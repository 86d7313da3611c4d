"""Each epoch-end callback alone, and a Fitter run with callbacks of one's own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import pytest
from mxnet import gluon

from mxlstm.config import TrainConfig
from mxlstm.errors import TrainingError
from mxlstm.training.callbacks import (
    Callback,
    Checkpointing,
    EarlyStopping,
    PlateauDecay,
    default_callbacks,
)
from mxlstm.training.checkpoint import find_checkpoint


def state(epoch: int, best_epoch: int, bad: int) -> dict:
    return {"epoch": epoch, "best_epoch": best_epoch, "bad_epochs": bad, "best": 0.5,
            "global_step": 10 * epoch, "history": [], "stopped_early": False}


def fitter(tmp_path: Path | None = None, lr: float = 0.1):
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    return SimpleNamespace(model=net, trainer=trainer, run_dir=tmp_path,
                           checkpoint_files={"config.json": "{}"})


def test_plateau_decay_only_after_an_epoch_without_improvement():
    f, decay = fitter(lr=0.1), PlateauDecay(0.5)
    decay.on_epoch_end(f, state(1, 1, 0), {})
    assert f.trainer.learning_rate == pytest.approx(0.1)
    decay.on_epoch_end(f, state(2, 1, 1), {})
    decay.on_epoch_end(f, state(3, 1, 2), {})
    assert f.trainer.learning_rate == pytest.approx(0.025)


def test_early_stopping_after_patience_bad_epochs():
    stop, s = EarlyStopping(2), state(2, 1, 1)
    stop.on_epoch_end(None, s, {})
    assert s["stopped_early"] is False
    s = state(3, 1, 2)
    stop.on_epoch_end(None, s, {})
    assert s["stopped_early"] is True


def test_checkpointing_writes_best_and_epoch_and_prunes(tmp_path):
    f, save = fitter(tmp_path), Checkpointing()
    save.on_epoch_end(f, state(1, 1, 0), {})
    save.on_epoch_end(f, state(2, 1, 1), {})  # not the best: no new best
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["best", "epoch-0002"]
    assert find_checkpoint(tmp_path, "latest").name == "epoch-0002"
    assert find_checkpoint(tmp_path, "best") is not None


def test_checkpointing_failure_is_one_training_error(tmp_path):
    blocked = tmp_path / "run"
    blocked.write_text("a file where the run directory should be")
    with pytest.raises(TrainingError, match="cannot save the checkpoint of epoch 1"):
        Checkpointing().on_epoch_end(fitter(blocked), state(1, 1, 0), {})


def test_default_callbacks_follow_the_config():
    kinds = [type(c) for c in default_callbacks(TrainConfig(schedule="plateau",
                                                            early_stopping=3))]
    assert kinds == [PlateauDecay, EarlyStopping, Checkpointing]
    assert [type(c) for c in default_callbacks(TrainConfig(early_stopping=0))] == \
        [Checkpointing]


class Recorder(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_epoch_end(self, fitter, state: dict, record: dict) -> None:
        self.seen.append((state["epoch"], len(state["history"])))
        if state["epoch"] == 2:
            state["stopped_early"] = True  # a callback may end the run


def test_fitter_runs_the_given_callbacks_instead_of_the_defaults(tmp_path):
    import numpy as np

    from mxlstm.blocks.models import SequenceModel
    from mxlstm.training.objectives import Classification
    from mxlstm.training.trainer import Fitter

    rng = np.random.RandomState(0)
    x = rng.normal(size=(32, 4, 3)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int32)
    loader = gluon.data.DataLoader(
        gluon.data.ArrayDataset(x, y, np.full(32, 4, np.float32)), batch_size=16)
    model = SequenceModel(2, hidden_size=4)
    model.initialize(mx.init.Xavier())
    recorder = Recorder()
    cfg = TrainConfig(progress=False, epochs=4)
    state = Fitter(model, Classification(2), cfg, tmp_path, [mx.cpu()],
                   callbacks=[recorder]).fit(loader, loader, len(loader))
    assert recorder.seen == [(1, 1), (2, 2)]  # each epoch's record is in the history
    assert state["epoch"] == 2 and state["stopped_early"]
    assert not (tmp_path / "checkpoints").exists()  # no Checkpointing callback given

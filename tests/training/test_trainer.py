"""The fit loop alone: non-finite losses, data parallelism over contexts, clipping."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from mxlstm.blocks.models import SequenceModel
from mxlstm.config import TrainConfig
from mxlstm.errors import TrainingError
from mxlstm.training.checkpoint import find_checkpoint
from mxlstm.training.objectives import Classification
from mxlstm.training.trainer import Fitter, parse_contexts, seed_everything


def data(n=64, t=5, c=3, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, t, c)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int32)
    lengths = np.full(n, t, np.float32)
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y, lengths), batch_size=16)


def make(contexts, **train):
    seed_everything(0)
    model = SequenceModel(2, hidden_size=8)
    model.initialize(mx.init.Xavier(), ctx=contexts)
    model.hybridize()
    model(mx.nd.zeros((1, 5, 3), ctx=contexts[0]), mx.nd.array([5], ctx=contexts[0]))
    cfg = TrainConfig(progress=False, epochs=train.pop("epochs", 2), **train)
    return model, cfg


class PoisonAfter(Classification):
    """Returns a NaN loss from training step ``step`` on."""

    def __init__(self, step: int) -> None:
        super().__init__(2)
        self.calls, self.step = 0, step

    def forward(self, model, shard, index):
        loss, out = super().forward(model, shard, index)
        if mx.autograd.is_training():
            self.calls += 1
            if self.calls >= self.step:
                loss = loss * float("nan")
        return loss, out


def test_nan_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model, cfg = make([mx.cpu()], epochs=3)
    loader = data()
    fitter = Fitter(model, PoisonAfter(step=6), cfg, tmp_path, [mx.cpu()])
    with pytest.raises(TrainingError, match="step 6: the training loss became nan"):
        fitter.fit(loader, loader, len(loader))
    assert find_checkpoint(tmp_path, "latest").name == "epoch-0001"


def test_nan_skip_policy_skips_batches_and_finishes(tmp_path):
    model, cfg = make([mx.cpu()], epochs=2, nan_policy="skip")
    loader = data()
    before = {k: v.data().asnumpy().copy() for k, v in model.collect_params().items()}
    state = Fitter(model, PoisonAfter(step=1), cfg, tmp_path, [mx.cpu()]).fit(
        loader, loader, len(loader))
    assert state["epoch"] == 2
    assert math.isnan(state["history"][0]["train_loss"]) or state["history"][0][
        "train_loss"] == 0.0
    for k, v in model.collect_params().items():
        np.testing.assert_array_equal(v.data().asnumpy(), before[k])


def test_data_parallel_over_two_contexts_equals_one(tmp_path):
    """cpu(0)+cpu(1) stand in for two GPUs: same global batch, same result."""
    loader = data()
    results = []
    for contexts in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        model, cfg = make(contexts, epochs=2)
        Fitter(model, Classification(2), cfg, tmp_path / str(len(contexts)), contexts).fit(
            loader, loader, len(loader))
        results.append({k: v.data(mx.cpu(0)).asnumpy()
                        for k, v in model._collect_params_with_prefix().items()})
    for key in results[0]:
        np.testing.assert_allclose(results[0][key], results[1][key], atol=1e-5, err_msg=key)


def test_parse_contexts():
    assert parse_contexts("cpu") == [mx.cpu(0)]
    assert parse_contexts("cpu:0,1") == [mx.cpu(0), mx.cpu(1)]
    with pytest.raises(Exception, match="GPU"):
        parse_contexts("gpu:0")
    with pytest.raises(Exception, match="train.ctx"):
        parse_contexts("tpu")


def test_queued_steps_equal_waiting_at_every_step(tmp_path):
    """fit() reads each step's loss only once the next step is queued (the loader overlaps
    the engine's work): parameters and the epoch's mean loss are bit-equal to a loop that
    waits for every step, and so is the clipped update (clip_norm without a sync)."""
    loader = data()
    model, cfg = make([mx.cpu()], epochs=1, clip_norm=0.05)
    state = Fitter(model, Classification(2), cfg, tmp_path / "fit", [mx.cpu()]).fit(
        loader, loader, len(loader))
    queued = {k: v.data().asnumpy() for k, v in model._collect_params_with_prefix().items()}
    model, cfg = make([mx.cpu()], epochs=1, clip_norm=0.05)
    fitter = Fitter(model, Classification(2), cfg, tmp_path / "wait", [mx.cpu()])
    fitter.make_trainer(len(loader))
    seed_everything(cfg.seed, 0)
    losses = [fitter.train_step(batch, step + 1) for step, batch in enumerate(loader)]
    for key, value in model._collect_params_with_prefix().items():
        np.testing.assert_array_equal(value.data().asnumpy(), queued[key], err_msg=key)
    mean = sum(t for t, _ in losses) / sum(n for _, n in losses)
    assert state["history"][0]["train_loss"] == pytest.approx(mean, rel=1e-12)


def test_each_loss_is_read_only_after_the_next_step_is_queued(tmp_path, monkeypatch):
    """The order the engine overlap needs: step k's loss is read (the only wait of a step)
    after step k + 1 is issued, in fit() and so in the e2e benchmark's bare step."""
    from mxlstm.training import trainer

    events = []
    issue, result = trainer.Fitter.issue_step, trainer.PendingLoss.result
    monkeypatch.setattr(trainer.Fitter, "issue_step", lambda self, batch, step: (
        events.append(("issue", step)), issue(self, batch, step))[1])
    monkeypatch.setattr(trainer.PendingLoss, "result", lambda self: (
        events.append(("read", self.step)), result(self))[1])
    loader = data()  # 4 batches
    model, cfg = make([mx.cpu()], epochs=1, max_batches=3, select="last")
    Fitter(model, Classification(2), cfg, tmp_path, [mx.cpu()]).fit(loader, None, len(loader))
    assert events == [("issue", 1), ("issue", 2), ("read", 1), ("issue", 3), ("read", 2),
                      ("read", 3)]


"""An LSTM really learns long-range memory: the adding problem at T = 100."""

from __future__ import annotations

import mxnet as mx
from mxnet import autograd, gluon

from mxlstm import LSTM
from mxlstm.data.synthetic import ADDING_BASELINE_MSE, adding_problem


class LastStepRegressor(gluon.HybridBlock):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = LSTM(hidden)
        self.out = gluon.nn.Dense(1, flatten=False)

    def hybrid_forward(self, F, x):
        last = F.squeeze(F.slice_axis(self.rnn(x), axis=1, begin=-1, end=None), axis=1)
        return F.reshape(self.out(last), shape=(-1,))


def test_lstm_learns_the_adding_problem_at_t100():
    mx.random.seed(0)
    model = LastStepRegressor(32)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True)
    trainer = gluon.Trainer(model.collect_params(), "adam",
                            {"learning_rate": 0.01, "clip_gradient": 1.0})
    x_val, y_val = (mx.nd.array(a) for a in adding_problem(1000, 100, seed=10**6))
    mse = float("inf")
    for step in range(3000):
        x, y = (mx.nd.array(a) for a in adding_problem(64, 100, seed=step))
        with autograd.record():
            loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        trainer.step(1)
        if step % 100 == 99:
            mse = ((model(x_val) - y_val) ** 2).mean().asscalar()
            if mse < 0.01:
                break
    assert mse < 0.01, f"validation MSE {mse:.4f} after {step + 1} steps " \
                       f"(baseline {ADDING_BASELINE_MSE:.3f})"

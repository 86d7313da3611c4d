"""trace() and gradient_flow() on the model of every task, with each cell type: the outputs
computed from the trace equal the model's own forward on a real test batch."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm import tasks
from mxlstm.blocks.series_model import SeriesModel
from mxlstm.inspect import gradient_flow, model_outputs, trace
from mxlstm.runs import init_model

SMALL = {"model.hidden_size": 6, "train.eval_batch_size": 8}
# the series presets (vowels, uea, series-regression) use the series model (LSTM-FCN,
# per-series norm); max_steps 10 makes it average windows of steps too
SMALL_FCN = {"model.conv_filters": "4,6,4"}
SERIES_TASKS = {"vowels": 3, "uea": 1, "series-regression": 4}  # the window of each
TASK_FLAGS = {
    "digits": {},
    "vowels": {**SMALL_FCN, "model.max_steps": 10, "model.conv_steps": 0},  # conv: every step
    "uea": {"data.name": "ItalyPowerDemand", **SMALL_FCN},
    "series-regression": {**SMALL_FCN, "model.max_steps": 30},
    "vowels-plain": {"model.family": "lstm", "model.series_norm": "false",
                     "model.max_steps": 0},
    "text": {"model.embed_size": 8, "data.max_vocab": 300},
    "lm": {"model.embed_size": 6, "data.bptt": 12, "data.max_vocab": 200},
    "adding": {"data.num_train": 16, "data.num_eval": 8, "data.seq_length": 30},
    "copy": {"data.num_train": 16, "data.num_eval": 8, "data.seq_length": 10,
             "data.copy_length": 3},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "corpus.txt"
    rng = np.random.RandomState(0)
    words = ["the", "cell", "gate", '"', "(", ")", ".", "forgets", "remembers"]
    path.write_text("\n\n".join(" ".join(rng.choice(words, 30)) for _ in range(40)))
    return str(path)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("task", list(TASK_FLAGS))
def test_trace_equals_forward_and_gradients_flow(task, cell, corpus):
    flags = {**SMALL, **TASK_FLAGS[task], "model.cell": cell}
    if task == "lm":
        flags["data.path"] = corpus
    if cell == "lstm" and task in ("digits", "text"):
        flags["model.num_layers"] = 2
    mx.random.seed(0)
    prepared = tasks.prepare(tasks.user_config(task.split("-plain")[0], flags=flags))
    init_model(prepared, [mx.cpu()])
    model = prepared.model
    assert isinstance(model, SeriesModel) == (task in SERIES_TASKS)
    batch = [b.as_in_context(mx.cpu()) for b in next(iter(prepared.test_loader))]
    if task == "lm":
        ids, targets = batch
        states = model.begin_state(ids.shape[0])
        expected = model(ids, states)[0].asnumpy()
        got = model_outputs(model, trace(model, ids.asnumpy()))
        flow = gradient_flow(model, ids, targets)
    else:
        x, y, lengths = batch
        expected = model(x, lengths).asnumpy()
        tr = trace(model, x.asnumpy(), lengths.asnumpy())
        got = model_outputs(model, tr)
        assert tr.stride == SERIES_TASKS.get(task, 1)
        flow = gradient_flow(model, x, y, lengths, kind=prepared.meta["kind"])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.isfinite(flow.loss) and all(np.isfinite(v).all() for v in flow.hidden.values())
    assert flow.inputs.max() > 0

"""Blocks rebuild from their own options; a variant shares the trained Parameters."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from mxlstm import ConfigError, RecurrentLayer
from mxlstm.blocks.models import LanguageModel, SequenceModel


def test_options_rebuild_an_equal_layer():
    mx.random.seed(1)
    layer = RecurrentLayer("lstm", 6, num_layers=2, bidirectional=True, dropout=0.2,
                           forget_bias=0.5, peephole=True)
    assert layer.options()["peephole"] is True and layer.options()["num_layers"] == 2
    copy = RecurrentLayer(**layer.options())
    assert copy.options() == layer.options()
    assert sorted(copy._collect_params_with_prefix()) == \
        sorted(layer._collect_params_with_prefix())
    assert layer.mode == "lstm" and RecurrentLayer("rnn", 3, activation="relu").mode == \
        "rnn_relu"


def test_variant_shares_parameters_and_computes_the_same():
    mx.random.seed(2)
    layer = RecurrentLayer("gru", 5, num_layers=2, bidirectional=True)
    layer.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.normal(shape=(3, 4, 2))
    out = layer(x)
    twin = layer.variant(return_states=True, one_op_per_layer=True, split_directions=True)
    assert twin.l1_h2h_weight is layer.l1_h2h_weight
    new_out, states = twin(x)
    assert np.abs(new_out.asnumpy() - out.asnumpy()).max() <= 1e-6
    assert states[0].shape == (4, 3, 5)


def test_streaming_sequence_model_equals_the_model_on_every_prefix():
    mx.random.seed(3)
    model = SequenceModel(3, hidden_size=6, num_layers=2, bidirectional=False,
                          input_projection=4)
    model.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.normal(shape=(2, 5, 3))
    stream = model.variant(streaming=True)
    first, *states = stream(x[:, :2], *model.encoder.begin_state(2))
    second, *_ = stream(x[:, 2:], *states)
    steps = mx.nd.concat(first, second, dim=1).asnumpy()
    for t in range(1, 6):
        prefix = model(x[:, :t], mx.nd.full((2,), t)).asnumpy()
        assert np.abs(steps[:, t - 1] - prefix).max() <= 1e-5


def test_streaming_is_refused_for_a_bidirectional_model():
    with pytest.raises(ConfigError, match="bidirectional"):
        SequenceModel(3, hidden_size=4, bidirectional=True, streaming=True)


def test_fixed_length_form_takes_no_lengths():
    mx.random.seed(4)
    model = SequenceModel(2, hidden_size=4, pooling="max")
    model.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.normal(shape=(3, 7, 2))
    fixed = model.variant(fixed_length=7)
    assert np.abs(fixed(x).asnumpy() - model(x, mx.nd.full((3,), 7)).asnumpy()).max() <= 1e-6


@pytest.mark.parametrize("tie", [False, True])
def test_language_model_streaming_form(tie):
    mx.random.seed(5)
    lm = LanguageModel(30, embed_size=6, hidden_size=6, tie_weights=tie, output_dropout=0.3)
    lm.initialize(mx.init.Uniform(0.3))
    ids = mx.nd.array(np.random.RandomState(0).randint(0, 30, (2, 5)))
    logits, (h, c) = lm(ids, lm.begin_state(2))
    flat = lm.variant(streaming=True)
    flat.hybridize(static_alloc=True)
    out, h2, c2 = flat(ids, *lm.begin_state(2))
    for a, b in ((logits, out), (h, h2), (c, c2)):
        assert np.abs(a.asnumpy() - b.asnumpy()).max() == 0.0

"""How a task model is put together, as the inspector needs it: input stage, recurrent
encoder, head, and the cells and parameters of every (layer, direction) of the encoder.

The two model classes (:class:`~mxlstm.blocks.models.SequenceModel`,
:class:`~mxlstm.blocks.models.LanguageModel`) are told apart by their public children (a language
model has a ``decoder``), so this module needs no import of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mxnet as mx

from mxlstm.errors import ConfigError

# every parameter a cell may own, under its short name (MXNet's fused naming: l0_i2h_weight)
CELL_PARAMS = ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias", "peep_i", "peep_f",
               "peep_o", "ln_gamma", "ln_beta", "ln_c_gamma", "ln_c_beta", "h2r_weight")


@dataclass
class LayerCell:
    """One (layer, direction) of an encoder: ``key`` ('l0', 'r0', 'l1', ...), its cell
    (the step equations' options) and its parameters as NDArrays under short names."""

    key: str
    layer: int
    reverse: bool
    cell: Any
    params: dict[str, mx.nd.NDArray]


def is_language_model(model) -> bool:
    """True for a :class:`~mxlstm.blocks.models.LanguageModel` (ids and states in, logits out)."""
    return hasattr(model, "decoder") and hasattr(model, "begin_state")


def encoder_of(model):
    """The model's :class:`~mxlstm.recurrent.RecurrentLayer`."""
    if type(model).__name__ == "SeriesModel":  # its input stage and branches are not traced
        raise ConfigError("the inspector traces SequenceModel and LanguageModel runs; this run "
                          "uses the series model (model.family=lstm_fcn, model.series_norm or "
                          "model.max_steps): train it with --set model.family=lstm --set "
                          "model.series_norm=false --set model.max_steps=0 to inspect it")
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "cell_type"):
        raise ConfigError(f"{type(model).__name__} has no recurrent encoder to inspect")
    if encoder.layout != "NTC":
        raise ConfigError("the inspector reads encoders of layout NTC only")
    return encoder


def layer_cells(encoder, ctx: mx.Context | None = None) -> list[LayerCell]:
    """Cells and parameters of ``encoder`` in the order ``l0, r0, l1, r1, ...``.

    The cell objects live in ``encoder._table`` (a private attribute of
    :class:`~mxlstm.recurrent.RecurrentLayer`; the only private access of the inspector).
    The parameters are the encoder's public attributes ``<key>_<name>``.
    """
    cells = encoder._table.cells
    out = []
    for index, cell in enumerate(cells):
        layer, di = divmod(index, encoder.num_directions)
        key = f"{encoder.directions[di]}{layer}"
        params = {}
        for short in CELL_PARAMS:
            param = getattr(encoder, f"{key}_{short}", None)
            if param is not None:
                params[short] = param.data(ctx) if ctx is not None else param.data()
        out.append(LayerCell(key, layer, di == 1, cell, params))
    return out


def materialize(model, x: mx.nd.NDArray, valid_length: mx.nd.NDArray) -> None:
    """Finish MXNet's deferred initialisation (shapes known at the first call) with one
    forward pass of the model itself, when any parameter still waits for it."""
    try:
        for param in model.collect_params().values():
            param.data()
        return
    except mx.gluon.parameter.DeferredInitializationError:
        pass
    with mx.autograd.pause(train_mode=False):
        if is_language_model(model):
            model(x, model.begin_state(x.shape[0], ctx=x.context))
        else:
            model(x, valid_length)


def input_stage(model, x: mx.nd.NDArray) -> mx.nd.NDArray:
    """What the encoder reads: ``x (N, T, C)`` or ids ``(N, T)`` -> ``(N, T, E)``
    (embedding and input projection; the dropouts are the identity at evaluation)."""
    if getattr(model, "embedding", None) is not None:
        x = model.embedding(x)
    if getattr(model, "projection", None) is not None:
        x = model.projection(x)
    return x.astype("float32")


def head_outputs(model, out: mx.nd.NDArray, valid_length: mx.nd.NDArray) -> mx.nd.NDArray:
    """The model's outputs from the encoder's outputs ``out (N, T, D*H)``: logits
    ``(N, T, V)`` of a language model, per-step ``(N, T, K)`` or pooled ``(N, K)``."""
    if is_language_model(model):
        return model.decoder(out)
    if getattr(model, "per_step", False):
        return model.head(out)
    from mxlstm.blocks.models import pool

    pooled = pool(mx.nd, out, valid_length, model.pooling, model.bidirectional,
                  model.encoder.hidden_size)
    return model.head(pooled)

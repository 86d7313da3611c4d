"""How a task model is put together, as the inspector needs it: what its recurrent
encoder reads (the input stage), the encoder itself, and what the model makes of the
encoder's outputs (the head), plus the cells and parameters of every (layer, direction).

One :class:`ModelView` per model class, chosen by :func:`view_of` with ``isinstance``:

=================================  ==============================  ===========================
model                              input stage                     head
=================================  ==============================  ===========================
:class:`SequenceModel`             embedding, input projection     pooling (or per step), head
:class:`LanguageModel`             embedding                       decoder
:class:`SeriesModel` (LSTM-FCN)    per-series z-norm, windowing    pooling + conv branch (its
                                                                   own windows), head, target
                                                                   scale
=================================  ==============================  ===========================

Dropouts are the identity (evaluation), so they are left out. Only public attributes of
the models are read (their blocks and options), never their ``hybrid_forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mxnet as mx

from mxlstm.blocks.models import LanguageModel, SequenceModel, pool
from mxlstm.blocks.series_model import SeriesModel
from mxlstm.ensemble import EnsembleModel
from mxlstm.errors import ConfigError

nd = mx.nd

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


class ModelView:
    """The inspector's reading of one model class (see the table of the module).

    ``stateful``: reads token windows with carried states (no ``valid_length``);
    ``stride``: input steps averaged into one encoder step; ``own_series``: the encoder
    reads a rewritten series (normalised / windowed), not the raw input; ``mse_scale``:
    the factor of a regression's squared error in the training loss.
    """

    stateful = False
    own_series = False

    def __init__(self, model) -> None:
        self.model = model
        self.encoder = _recurrent_encoder(model)

    @property
    def stride(self) -> int:
        return 1

    @property
    def mse_scale(self) -> float:
        return 1.0

    def call(self, x: mx.nd.NDArray, valid_length: mx.nd.NDArray):
        """The model's own forward on ``x``."""
        return self.model(x, valid_length)

    def stage(self, x: mx.nd.NDArray, valid_length: mx.nd.NDArray):
        """What the encoder reads: ``x (N, T, C)`` or ids ``(N, T)`` -> ``(enc_in (N, T', E),
        valid_length (N,))`` (``T' = T`` unless the model averages windows of steps)."""
        if getattr(self.model, "embedding", None) is not None:
            x = self.model.embedding(x)
        if getattr(self.model, "projection", None) is not None:
            x = self.model.projection(x)
        return x.astype("float32"), valid_length

    def side(self, x: mx.nd.NDArray, valid_length: mx.nd.NDArray) -> dict:
        """What a branch beside the encoder reads, by name (none here)."""
        return {}

    def head(self, out: mx.nd.NDArray, valid_length: mx.nd.NDArray,
             side: dict) -> mx.nd.NDArray:
        """The model's outputs from the encoder's ``out (N, T', D*H)`` (``side``: what
        :meth:`side` gave): ``(N, K)`` pooled or ``(N, T, K)`` per step."""
        model = self.model
        if model.per_step:
            return model.head(out)
        return model.head(_pool(model, out, valid_length))


class LanguageView(ModelView):
    """:class:`~mxlstm.blocks.models.LanguageModel`: ids and states in, logits out."""

    stateful = True

    def call(self, x, valid_length):
        return self.model(x, self.model.begin_state(x.shape[0], ctx=x.context))

    def head(self, out, valid_length, side):
        return self.model.decoder(out)


class SeriesView(ModelView):
    """:class:`~mxlstm.blocks.series_model.SeriesModel`: the recurrent branch reads the
    series after per-series z-normalisation (``znorm``) and windows of ``stride`` steps
    (means, or means, maxima and minima: ``window_stats``); the convolutional branch
    (``conv``) reads the normalised series in windows of its own
    resolution (``conv_stride``); their features are concatenated before the head, whose
    outputs are scaled back to the targets."""

    @property
    def own_series(self) -> bool:
        return self.model.znorm is not None or self.model.stride > 1

    @property
    def stride(self) -> int:
        return self.model.stride

    @property
    def mse_scale(self) -> float:
        """``1 / std**2`` of the targets the head was trained on standardised (as
        :class:`~mxlstm.tasks.regression.ScaledRegression`), else 1."""
        if self.model.target_std is None:
            return 1.0
        return 1.0 / max(float(self.model.target_std.data().asscalar()) ** 2, 1e-12)

    def _averaged(self, x, valid_length, stride: int):
        x, valid_length = x.astype("float32"), valid_length.astype("float32")
        if self.model.znorm is not None:
            x = self.model.znorm(x, valid_length)
        return self.model.windows(nd, x, valid_length, stride)

    def stage(self, x, valid_length):
        return self._averaged(x, valid_length, self.model.stride)

    def side(self, x, valid_length):
        """Each convolutional branch's input at its own resolution (``conv_stride``;
        ``fine_stride`` for the second, ``conv_fine_*``)."""
        side = {}
        for (_, stride), name in zip(self.model.conv_branches(), ("conv", "conv_fine")):
            conv_in, conv_length = self._averaged(x, valid_length, stride)
            side.update({f"{name}_input": conv_in, f"{name}_valid_length": conv_length})
        return side

    def head(self, out, valid_length, side):
        model = self.model
        features = _pool(model, out, valid_length)
        for (branch, _), name in zip(model.conv_branches(), ("conv", "conv_fine")):
            conv = branch(side[f"{name}_input"], side[f"{name}_valid_length"])
            features = nd.concat(features, conv, dim=1)
        out = model.head(features)
        if model.target_mean is not None:
            ctx = out.context
            out = nd.broadcast_add(nd.broadcast_mul(out, model.target_std.data(ctx)),
                                   model.target_mean.data(ctx))
        return out


VIEWS: tuple[tuple[type, type[ModelView]], ...] = (
    (LanguageModel, LanguageView), (SeriesModel, SeriesView), (SequenceModel, ModelView))


def view_of(model) -> ModelView:
    """The :class:`ModelView` of ``model``; a model the inspector cannot read is refused
    in one line."""
    for cls, view in VIEWS:
        if isinstance(model, cls):
            return view(model)
    if isinstance(model, EnsembleModel):
        raise ConfigError("the run is a seed ensemble: inspect one of its members "
                          "(--model RUN/members/seed-S)")
    raise ConfigError(f"{type(model).__name__} has no recurrent encoder to inspect")


def _recurrent_encoder(model):
    encoder = model.encoder
    if encoder.layout != "NTC":
        raise ConfigError("the inspector reads encoders of layout NTC only")
    return encoder


def _pool(model, out, valid_length):
    return pool(nd, out, valid_length, model.pooling, model.bidirectional,
                model.encoder.hidden_size)


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


def materialize(view: ModelView, x: mx.nd.NDArray, valid_length: mx.nd.NDArray) -> None:
    """Finish MXNet's deferred initialisation (shapes known at the first call) with one
    forward pass of the model itself, when any parameter still waits for it."""
    try:
        for param in view.model.collect_params().values():
            param.data()
        return
    except mx.gluon.parameter.DeferredInitializationError:
        pass
    with mx.autograd.pause(train_mode=False):
        view.call(x, valid_length)

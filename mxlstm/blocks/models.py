"""Task models: a recurrent encoder between an input stage and a task head.

=========================  =================================  ===========================
model                      inputs (positional)                outputs
=========================  =================================  ===========================
:class:`SequenceModel`     ``x (N, T, C)`` or ids ``(N, T)``, ``(N, K)`` logits / targets,
                           ``valid_length (N,)``              or ``(N, T, K)`` per step
``streaming=True``         ``x``, then each state             per step ``(N, T, K)``,
                           ``(L, N, H)``                      then the new states
``fixed_length=T``         ``x`` whose rows all hold ``T``    as without it
                           steps (no ``valid_length``)
:class:`LanguageModel`     ids ``(N, T)``, states (a list)    logits ``(N, T, V)``, states
``streaming=True``         ids, then each state               logits, then each state
=========================  =================================  ===========================

The modes are flags of one class (as Keras ``RNN(stateful=...)``): an inference form of a
trained model is ``model.variant(streaming=True)``, which shares its Parameter objects.
"""

from __future__ import annotations

from typing import Any

from mxnet import gluon
from mxnet.gluon import HybridBlock, nn

from mxlstm.blocks._sequence import length_mask
from mxlstm.blocks.recurrent import RecurrentLayer
from mxlstm.blocks.regularize import EmbeddingDropout, LockedDropout
from mxlstm.errors import ConfigError

POOLINGS = ("last", "mean", "max")


def pool(F, out, valid_length, how: str, bidirectional: bool, hidden: int,
         length: int | None = None):
    """Summarise encoder outputs ``out (N, T, D*H)`` over each sequence's valid steps.

    ``last``: the forward direction's output at step ``valid_length - 1`` (and, when
    bidirectional, the reverse direction's output at step 0, which has read the whole
    sequence). ``mean`` / ``max``: over valid steps only. Returns ``(N, D*H)``.
    ``valid_length=None``: every row holds ``length`` steps (ops mx2onnx converts).
    """
    if valid_length is None:
        return _pool_full(F, out, how, bidirectional, hidden, length)
    if how == "last":
        batch = F.contrib.arange_like(valid_length, axis=0)
        index = F.stack(batch, valid_length - 1, axis=0)  # (2, N)
        last = F.gather_nd(out, index)
        if not bidirectional:
            return last
        first = F.squeeze(F.slice_axis(out, axis=1, begin=0, end=1), axis=1)
        return F.concat(F.slice_axis(last, axis=1, begin=0, end=hidden),
                        F.slice_axis(first, axis=1, begin=hidden, end=None), dim=1)
    mask = F.expand_dims(F.swapaxes(length_mask(F, F.swapaxes(out, 0, 1), valid_length),
                                    0, 1), axis=2)  # (N, T, 1)
    if how == "mean":
        total = F.sum(F.broadcast_mul(out, mask), axis=1)
        return F.broadcast_div(total, F.reshape(valid_length, shape=(-1, 1)))
    return F.max(F.where(F.broadcast_like(mask, out) > 0, out, F.ones_like(out) * -1e30),
                 axis=1)


def dense_head(num_outputs: int, head_units: tuple[int, ...] = (),
               head_dropout: float = 0.0) -> nn.HybridSequential:
    """The classifier / regressor head: ReLU dense layers of ``head_units`` (each followed
    by dropout when ``head_dropout``), then a linear layer to ``num_outputs``; acts on the
    last axis. Build it inside the model's ``name_scope``."""
    head = nn.HybridSequential()
    for units in head_units:
        head.add(nn.Dense(units, activation="relu", flatten=False))
        if head_dropout:
            head.add(nn.Dropout(head_dropout))
    head.add(nn.Dense(num_outputs, flatten=False))
    return head


def _pool_full(F, out, how: str, bidirectional: bool, hidden: int, length: int):
    """:func:`pool` of rows that all hold ``length`` steps: no lengths, no gathers."""
    # mx2onnx checks its graph against onnx's newest opset, where ReduceMean/ReduceMax
    # take no 'axes' attribute: sum / T and a global max pooling convert instead
    if how == "mean":
        return F.sum(out, axis=1) / float(length)
    if how == "max":
        pooled = F.Pooling(F.expand_dims(F.swapaxes(out, 1, 2), axis=3), kernel=(1, 1),
                           pool_type="max", global_pool=True, layout="NCHW")
        return F.reshape(pooled, shape=(0, -1))
    last = F.squeeze(F.slice_axis(out, axis=1, begin=-1, end=None), axis=1)
    if not bidirectional:
        return last
    first = F.squeeze(F.slice_axis(out, axis=1, begin=0, end=1), axis=1)
    return F.concat(F.slice_axis(last, axis=1, begin=0, end=hidden),
                    F.slice_axis(first, axis=1, begin=hidden, end=None), dim=1)


class SequenceModel(HybridBlock):
    """Input stage -> recurrent encoder -> pooling -> dense head.

    The seed's MNIST model is ``SequenceModel(num_outputs=10, hidden_size=50,
    head_units=(256,))``: LSTM 50, Dense 256 relu, Dense 10.

    Parameters
    ----------
    num_outputs : int
        ``K``: classes (logits) or regression targets.
    vocab_size : int or None
        Token-id input through an embedding of ``embed_size`` (with ``embedding_dropout``);
        None for float features ``(N, T, C)``.
    input_projection : int or None
        A dense layer applied at every step before the encoder.
    per_step : bool
        Outputs for every step ``(N, T, K)`` (sequence to sequence) instead of pooling.
    streaming : bool
        Inference chunk by chunk (unidirectional; pooling 'last' or per step): inputs
        ``x``, then each state ``(L, N, H)``; outputs the head at every step ``(N, T, K)``
        (with 'last' pooling, the answer for the sequence ending there), then the new
        states.
    fixed_length : int or None
        Inference on rows that all hold ``T`` steps: the only input is ``x``.
    **encoder
        :class:`~mxlstm.blocks.recurrent.RecurrentLayer` options (``cell_type``,
        ``hidden_size``, ``num_layers``, ``bidirectional``, ``dropout``, ``fused``, ...).

    Inputs: ``x``, ``valid_length (N,)`` (float or int; ``T`` for fixed-length data).

    >>> import mxnet as mx
    >>> model = SequenceModel(3, hidden_size=4, bidirectional=False)
    >>> model.initialize()
    >>> model(mx.nd.ones((2, 5, 1)), mx.nd.array([5, 2])).shape
    (2, 3)
    >>> stream = model.variant(streaming=True)
    >>> out, h, c = stream(mx.nd.ones((2, 5, 1)), *model.encoder.begin_state(2))
    >>> out.shape, h.shape
    ((2, 5, 3), (1, 2, 4))
    """

    def __init__(
        self,
        num_outputs: int,
        hidden_size: int = 128,
        cell_type: str = "lstm",
        vocab_size: int | None = None,
        embed_size: int = 128,
        embedding_dropout: float = 0.0,
        input_projection: int | None = None,
        input_dropout: float = 0.0,
        pooling: str = "last",
        head_units: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        per_step: bool = False,
        streaming: bool = False,
        fixed_length: int | None = None,
        prefix: str | None = None,
        params: Any = None,
        **encoder: Any,
    ) -> None:
        super().__init__(prefix=prefix, params=params)
        self._options = {
            "num_outputs": num_outputs, "hidden_size": hidden_size, "cell_type": cell_type,
            "vocab_size": vocab_size, "embed_size": embed_size,
            "embedding_dropout": embedding_dropout, "input_projection": input_projection,
            "input_dropout": input_dropout, "pooling": pooling, "head_units": head_units,
            "head_dropout": head_dropout, "per_step": per_step, "streaming": streaming,
            "fixed_length": fixed_length, **encoder}
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if num_outputs < 1:
            raise ConfigError(f"num_outputs must be positive, got {num_outputs}")
        self.pooling = pooling
        self.per_step = per_step
        self.hidden_size = hidden_size
        self.streaming = streaming
        self.fixed_length = fixed_length
        if streaming:
            encoder["return_states"] = True
        with self.name_scope():
            self.embedding = (EmbeddingDropout(vocab_size, embed_size, embedding_dropout)
                              if vocab_size else None)
            self.projection = (nn.Dense(input_projection, flatten=False, activation="tanh")
                               if input_projection else None)
            self.input_dropout = LockedDropout(input_dropout) if input_dropout else None
            self.encoder = RecurrentLayer(cell_type, hidden_size, **encoder)
            self.bidirectional = self.encoder.num_directions == 2
            self.head = dense_head(num_outputs, head_units, head_dropout)

        if streaming and self.streaming_refusal():
            raise ConfigError(f"streaming: {self.streaming_refusal()}")

    def options(self) -> dict:
        """The constructor arguments (without ``prefix`` / ``params``)."""
        return dict(self._options)

    def variant(self, **changes: Any) -> SequenceModel:
        """This model rebuilt with ``changes`` to its options (e.g. ``streaming=True``,
        ``fixed_length=T``, encoder options) on the same Parameter objects."""
        return SequenceModel(**{**self.options(), **changes}, prefix=self.prefix,
                             params=self.collect_params())

    def streaming_refusal(self) -> str | None:
        """Why this model cannot run chunk by chunk (``streaming=True``), or None."""
        if self.bidirectional:
            return ("the model is bidirectional: its reverse direction reads each sequence "
                    "from the end, which a stream does not have yet")
        if not self.per_step and self.pooling != "last":
            return (f"pooling={self.pooling!r} summarises all steps; streaming needs "
                    f"pooling='last' (the head then reads the current step)")
        return None

    def hybrid_forward(self, F, x, *rest):
        valid_length = None
        if not (self.streaming or self.fixed_length):
            valid_length = F.cast(rest[0], dtype="float32")
        if self.embedding is not None:
            x = self.embedding(x)
        if self.projection is not None:
            x = self.projection(x)
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        if self.streaming:
            out, new = self.encoder(x, None, list(rest))
            return (self.head(out), *new)
        out = self.encoder(x, valid_length)
        if self.per_step:
            return self.head(out)
        return self.head(pool(F, out, valid_length, self.pooling, self.bidirectional,
                              self.encoder.hidden_size, self.fixed_length))


class LanguageModel(HybridBlock):
    """Embedding -> stacked LSTM -> decoder, AWD-style dropouts, optional tied weights.

    Inputs: ids ``(N, T)``, begin states (list of ``(L, N, H)``; from :meth:`begin_state`).
    Outputs: logits ``(N, T, V)`` and the final states (carry them to the next BPTT
    batch, detached).

    With ``tie_weights`` the decoder uses the embedding matrix, so the top layer's
    output size (``projection_size`` or ``hidden_size``) must equal ``embed_size``.
    ``streaming=True`` takes and returns the states as separate inputs and outputs
    (``ids, *states -> logits, *new states``), the form an export writes.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        cell_type: str = "lstm",
        tie_weights: bool = False,
        embedding_dropout: float = 0.0,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        streaming: bool = False,
        prefix: str | None = None,
        params: Any = None,
        **encoder: Any,
    ) -> None:
        super().__init__(prefix=prefix, params=params)
        encoder.setdefault("dropout", 0.0)
        self._options = {
            "vocab_size": vocab_size, "embed_size": embed_size, "hidden_size": hidden_size,
            "num_layers": num_layers, "cell_type": cell_type, "tie_weights": tie_weights,
            "embedding_dropout": embedding_dropout, "input_dropout": input_dropout,
            "output_dropout": output_dropout, "streaming": streaming, **encoder}
        self.streaming = streaming
        with self.name_scope():
            self.embedding = EmbeddingDropout(vocab_size, embed_size, embedding_dropout,
                                              weight_initializer="uniform")
            self.input_dropout = LockedDropout(input_dropout)
            self.encoder = RecurrentLayer(cell_type, hidden_size, num_layers,
                                          return_states=True, **encoder)
            self.output_dropout = LockedDropout(output_dropout)
            if tie_weights:
                if self.encoder.output_size != embed_size:
                    raise ConfigError(
                        f"tie_weights needs the encoder's output size "
                        f"({self.encoder.output_size}) to equal embed_size ({embed_size})")
                if params is not None:  # a variant: Gluon looks a name up one dict up
                    self.embedding.params.get("bias", shape=(vocab_size,))  # only
                self.decoder = nn.Dense(vocab_size, in_units=embed_size, flatten=False,
                                        params=self.embedding.params)
            else:
                self.decoder = nn.Dense(vocab_size, flatten=False)

    def options(self) -> dict:
        """The constructor arguments (without ``prefix`` / ``params``)."""
        return dict(self._options)

    def variant(self, **changes: Any) -> LanguageModel:
        """This model rebuilt with ``changes`` to its options (e.g. ``streaming=True``)
        on the same Parameter objects."""
        return LanguageModel(**{**self.options(), **changes}, prefix=self.prefix,
                             params=self.collect_params())

    def begin_state(self, batch_size: int, ctx=None) -> list:
        """Zero states for a batch of ``batch_size``, each ``(L, N, H)``."""
        return self.encoder.begin_state(batch_size, ctx=ctx)

    def hybrid_forward(self, F, ids, *states):
        states = list(states) if self.streaming else states[0]
        x = self.input_dropout(self.embedding(ids))
        out, states = self.encoder(x, None, states)
        logits = self.decoder(self.output_dropout(out))
        return (logits, *states) if self.streaming else (logits, states)


def count_parameters(block: gluon.Block) -> int:
    """Number of scalar parameters (after shapes are known)."""
    total = 0
    for param in block.collect_params().values():
        size = 1
        for dim in param.shape:
            size *= dim
        total += size
    return total

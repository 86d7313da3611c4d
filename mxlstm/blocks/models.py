"""Task models: a recurrent encoder between an input stage and a task head.

=========================  =================================  ===========================
model                      inputs (positional)                outputs
=========================  =================================  ===========================
:class:`SequenceModel`     ``x (N, T, C)`` or ids ``(N, T)``, ``(N, K)`` logits / targets,
                           ``valid_length (N,)``              or ``(N, T, K)`` per step
:class:`LanguageModel`     ids ``(N, T)``, states             logits ``(N, T, V)``, states
=========================  =================================  ===========================
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


def pool(F, out, valid_length, how: str, bidirectional: bool, hidden: int):
    """Summarise encoder outputs ``out (N, T, D*H)`` over each sequence's valid steps.

    ``last``: the forward direction's output at step ``valid_length - 1`` (and, when
    bidirectional, the reverse direction's output at step 0, which has read the whole
    sequence). ``mean`` / ``max``: over valid steps only. Returns ``(N, D*H)``.
    """
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
    **encoder
        :class:`~mxlstm.blocks.recurrent.RecurrentLayer` options (``cell_type``, ``hidden_size``,
        ``num_layers``, ``bidirectional``, ``dropout``, ``fused``, ...).

    Inputs: ``x``, ``valid_length (N,)`` (float or int; ``T`` for fixed-length data).
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
        **encoder: Any,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if num_outputs < 1:
            raise ConfigError(f"num_outputs must be positive, got {num_outputs}")
        self.pooling = pooling
        self.per_step = per_step
        self.hidden_size = hidden_size
        with self.name_scope():
            self.embedding = (EmbeddingDropout(vocab_size, embed_size, embedding_dropout)
                              if vocab_size else None)
            self.projection = (nn.Dense(input_projection, flatten=False, activation="tanh")
                               if input_projection else None)
            self.input_dropout = LockedDropout(input_dropout) if input_dropout else None
            self.encoder = RecurrentLayer(cell_type, hidden_size, **encoder)
            self.bidirectional = self.encoder.num_directions == 2
            self.head = nn.HybridSequential()
            for units in head_units:
                self.head.add(nn.Dense(units, activation="relu", flatten=False))
                if head_dropout:
                    self.head.add(nn.Dropout(head_dropout))
            self.head.add(nn.Dense(num_outputs, flatten=False))

    def hybrid_forward(self, F, x, valid_length):
        valid_length = F.cast(valid_length, dtype="float32")
        if self.embedding is not None:
            x = self.embedding(x)
        if self.projection is not None:
            x = self.projection(x)
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        out = self.encoder(x, valid_length)
        if self.per_step:
            return self.head(out)
        return self.head(pool(F, out, valid_length, self.pooling, self.bidirectional,
                              self.encoder.hidden_size))


class LanguageModel(HybridBlock):
    """Embedding -> stacked LSTM -> decoder, AWD-style dropouts, optional tied weights.

    Inputs: ids ``(N, T)``, begin states (list of ``(L, N, H)``; from :meth:`begin_state`).
    Outputs: logits ``(N, T, V)`` and the final states (carry them to the next BPTT
    batch, detached).

    With ``tie_weights`` the decoder uses the embedding matrix, so the top layer's
    output size (``projection_size`` or ``hidden_size``) must equal ``embed_size``.
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
        **encoder: Any,
    ) -> None:
        super().__init__()
        encoder.setdefault("dropout", 0.0)
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
                self.decoder = nn.Dense(vocab_size, in_units=embed_size, flatten=False,
                                        params=self.embedding.params)
            else:
                self.decoder = nn.Dense(vocab_size, flatten=False)

    def begin_state(self, batch_size: int, ctx=None) -> list:
        """Zero states for a batch of ``batch_size``, each ``(L, N, H)``."""
        return self.encoder.begin_state(batch_size, ctx=ctx)

    def hybrid_forward(self, F, ids, states):
        x = self.input_dropout(self.embedding(ids))
        out, states = self.encoder(x, None, states)
        return self.decoder(self.output_dropout(out)), states


def count_parameters(block: gluon.Block) -> int:
    """Number of scalar parameters (after shapes are known)."""
    total = 0
    for param in block.collect_params().values():
        size = 1
        for dim in param.shape:
            size *= dim
        total += size
    return total

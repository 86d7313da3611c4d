"""Regularisers for recurrent networks, one small piece each.

All are active only while ``autograd.is_training()`` (they use ``F.Dropout``, which is the
identity at evaluation), and all compose with the fused kernel except the two that act
inside the time loop (zoneout, recurrent variational dropout), which the recurrent layer
runs on its gate-level path.

================================  ==========================================  ==========
piece                             what is dropped                             fused path
================================  ==========================================  ==========
:class:`LockedDropout`            the same features at every time step        yes
:class:`EmbeddingDropout`         whole rows (words) of an embedding matrix   yes
:func:`drop_weights`              entries of ``h2h_weight`` (DropConnect)      yes
:func:`variational_mask`          the same units of ``h`` at every step       no
:func:`zoneout`                   units keep their previous value             no
================================  ==========================================  ==========
"""

from __future__ import annotations

from typing import Any

from mxnet.gluon import HybridBlock

from mxlstm.errors import ConfigError


def check_rate(name: str, p: float) -> float:
    """Return ``p`` if it is a probability in ``[0, 1)``, else raise ConfigError."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {p}")
    return float(p)


def bernoulli_keep(F, like, p: float):
    """0/1 mask shaped like ``like``, 1 with probability ``1 - p`` in training.

    At evaluation it is the constant ``1 - p`` (the mask's expectation).
    """
    return F.Dropout(F.ones_like(like), p=p) * (1.0 - p)


def drop_weights(F, weight, p: float):
    """DropConnect (Wan et al. 2013; AWD-LSTM's weight drop): drop weight entries, rescale.

    Applied once per forward pass, outside the time loop, so the same dropped matrix is
    used at every step and the fused kernel can take it as it is.
    """
    return F.Dropout(weight, p=p) if p > 0 else weight


def variational_mask(F, state, p: float):
    """A dropout mask for ``state (N, H)`` drawn once per sequence (Gal & Ghahramani 2016).

    Multiply ``h`` by it before the recurrent matrix product at every step.
    """
    return F.Dropout(F.ones_like(state), p=p)


def zoneout(F, new, old, p: float):
    """Zoneout (Krueger et al. 2017): each unit keeps ``old`` with probability ``p``.

    In training ``m * new + (1 - m) * old`` with ``m ~ Bernoulli(1 - p)``; at evaluation
    the expectation ``(1 - p) * new + p * old``.
    """
    keep_new = bernoulli_keep(F, new, p)
    return keep_new * new + (1 - keep_new) * old


class LockedDropout(HybridBlock):
    """Variational ("locked") dropout: one mask per sequence, shared over time.

    Input and output: ``(N, T, C)`` for ``layout='NTC'`` or ``(T, N, C)`` for ``'TNC'``.
    """

    def __init__(self, p: float, layout: str = "NTC", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if layout not in ("NTC", "TNC"):
            raise ConfigError(f"layout must be 'NTC' or 'TNC', got {layout!r}")
        self.p = check_rate("locked dropout", p)
        self._axes = (1,) if layout == "NTC" else (0,)

    def hybrid_forward(self, F, x):
        if self.p == 0:
            return x
        return F.Dropout(x, p=self.p, axes=self._axes)


class EmbeddingDropout(HybridBlock):
    """Embedding lookup that drops whole words (rows of the matrix) in training.

    Gal & Ghahramani (2016), as used in AWD-LSTM: a dropped word's vector is zero at every
    place it occurs in the batch; kept rows are scaled by ``1 / (1 - p)``.

    Input: token ids ``(N, T)`` (any shape); output: ``(N, T, E)``.
    """

    def __init__(self, vocab_size: int, embed_size: int, p: float = 0.0,
                 weight_initializer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p = check_rate("embedding dropout", p)
        self.vocab_size = vocab_size
        self.embed_size = embed_size
        self.weight = self.params.get("weight", shape=(vocab_size, embed_size),
                                      init=weight_initializer)

    def hybrid_forward(self, F, ids, weight):
        if self.p > 0:
            weight = F.Dropout(weight, p=self.p, axes=(1,))
        return F.Embedding(ids, weight, input_dim=self.vocab_size, output_dim=self.embed_size)

"""One time step of a recurrent cell: LSTM (explicit gates), GRU and a plain tanh RNN.

A cell knows one step and nothing about time. Every cell has the parameter layout of
MXNet's fused RNN operator, so the same weights run gate by gate here or fused in
:mod:`mxlstm.blocks.recurrent`:

=============  ================  =========================================
parameter      shape             meaning
=============  ================  =========================================
``i2h_weight`` ``(G*H, C)``      input-to-hidden, gates stacked on axis 0
``h2h_weight`` ``(G*H, R)``      hidden-to-hidden (``R = H``, or ``P`` with a projection)
``i2h_bias``   ``(G*H,)``
``h2h_bias``   ``(G*H,)``
=============  ================  =========================================

``G`` is 4 for LSTM (gate order input ``i``, forget ``f``, candidate ``g``, output ``o``),
3 for GRU (reset ``r``, update ``z``, new ``n``) and 1 for the plain RNN.

The layer runs the input projection ``W x + b`` for all steps at once (one big matrix
product) and calls :meth:`RecurrentCell.step` inside the time loop; used alone, a cell's
``hybrid_forward`` does both for one step.
"""

from __future__ import annotations

from typing import Any

import mxnet as mx
from mxnet.gluon import HybridBlock

from mxlstm.errors import ConfigError

Params = dict[str, Any]


def sigmoid(F, x):
    """``F.Activation`` rather than ``F.sigmoid``: oneDNN's kernel, several times faster on CPU."""
    return F.Activation(x, act_type="sigmoid")


def tanh(F, x):
    return F.Activation(x, act_type="tanh")


@mx.init.register
class ChronoBias(mx.init.Initializer):
    """Chrono initialisation of LSTM gate biases (Tallec & Ollivier 2018), layout ``i, f, g, o``.

    Forget bias ``b_f = log(u)``, ``u ~ U(1, max_steps - 1)``, and input bias ``-b_f``, so
    the units start with memory time scales spread up to ``max_steps``; the other gates 0.
    Drawn from MXNet's RNG (seeded by ``mx.random.seed``).
    """

    def __init__(self, max_steps: int) -> None:
        super().__init__(max_steps=max_steps)
        if max_steps < 3:
            raise ConfigError(f"chrono initialisation needs max_steps >= 3, got {max_steps}")
        self.max_steps = max_steps

    def _init_weight(self, name, arr):
        h = arr.shape[0] // 4
        forget = mx.nd.log(mx.nd.random.uniform(1, self.max_steps - 1, shape=(h,),
                                                ctx=arr.context))
        arr[:] = 0.0
        arr[0:h] = -forget
        arr[h:2 * h] = forget


class RecurrentCell(HybridBlock):
    """Base class: parameters in the fused layout and one step of the recurrence.

    Inputs (positional): ``x`` of shape ``(N, C)``, ``states`` a list of ``(N, H)`` arrays.
    Outputs: ``(output (N, H), new_states)``.
    """

    num_gates = 1
    mode = "rnn_tanh"  # the fused operator's name for this cell type

    def __init__(
        self,
        hidden_size: int,
        input_size: int = 0,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        recurrent_size: int | None = None,
        prefix: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(prefix=prefix, params=params)
        if hidden_size <= 0:
            raise ConfigError(f"hidden_size must be positive, got {hidden_size}")
        self.hidden_size = hidden_size
        self.input_size = input_size
        gh = self.num_gates * hidden_size
        rec = recurrent_size or hidden_size
        self.i2h_weight = self.params.get(
            "i2h_weight", shape=(gh, input_size), init=i2h_weight_initializer,
            allow_deferred_init=True)
        self.h2h_weight = self.params.get(
            "h2h_weight", shape=(gh, rec), init=h2h_weight_initializer)
        self.i2h_bias = self.params.get(
            "i2h_bias", shape=(gh,), init=i2h_bias_initializer)
        self.h2h_bias = self.params.get(
            "h2h_bias", shape=(gh,), init=h2h_bias_initializer)

    # -- what the layer needs -------------------------------------------------------
    @property
    def is_plain(self) -> bool:
        """True when one step is exactly what MXNet's fused operator computes."""
        return True

    @property
    def output_size(self) -> int:
        """Size of the output ``h`` (the hidden size, or the projection size)."""
        return self.hidden_size

    def state_info(self, batch_size: int = 0) -> list[dict]:
        """Shapes of the states, ``[{'shape': (N, H)}, ...]``."""
        return [{"shape": (batch_size, self.output_size)}]

    def begin_state(self, batch_size: int, ctx: mx.Context | None = None,
                    dtype: str = "float32") -> list:
        """Zero states on ``ctx``, each ``(N, H)``."""
        return [mx.nd.zeros(info["shape"], ctx=ctx, dtype=dtype)
                for info in self.state_info(batch_size)]

    def project_input(self, F, x, params: Params):
        """``x W_i2h^T + b_i2h`` over any leading axes: ``(..., C) -> (..., G*H)``."""
        return F.FullyConnected(x, params["i2h_weight"], params["i2h_bias"],
                                num_hidden=self.num_gates * self.hidden_size, flatten=False)

    def recurrent_projection(self, F, h, params: Params):
        """``h W_h2h^T + b_h2h``: ``(N, R) -> (N, G*H)``."""
        return F.FullyConnected(h, params["h2h_weight"], params["h2h_bias"],
                                num_hidden=self.num_gates * self.hidden_size)

    def step(self, F, x_proj, states: list, params: Params) -> tuple[Any, list]:
        """One step from the projected input ``x_proj (N, G*H)``; returns ``(h, states)``."""
        raise NotImplementedError

    def gates(self, F, a) -> list:
        """Split ``a (N, G*H)`` into ``G`` arrays ``(N, H)``.

        ``slice_axis`` per gate: on CPU its backward is far cheaper than ``split``'s.
        """
        h = self.hidden_size
        return [F.slice_axis(a, axis=1, begin=k * h, end=(k + 1) * h)
                for k in range(self.num_gates)]

    def hybrid_forward(self, F, x, states, **params):
        return self.step(F, self.project_input(F, x, params), list(states), params)


class RNNCell(RecurrentCell):
    """Elman RNN: ``h' = act(W x + b_i + U h + b_h)`` with ``act`` tanh (default) or relu."""

    num_gates = 1

    def __init__(self, hidden_size: int, activation: str = "tanh", **kwargs: Any) -> None:
        if activation not in ("tanh", "relu"):
            raise ConfigError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        super().__init__(hidden_size, **kwargs)
        self.activation = activation
        self.mode = "rnn_" + activation

    def step(self, F, x_proj, states, params):
        h = F.Activation(x_proj + self.recurrent_projection(F, states[0], params),
                         act_type=self.activation)
        return h, [h]


class GRUCell(RecurrentCell):
    """Gated recurrent unit with MXNet's (cuDNN's) equations, gate order ``r, z, n``::

        r = sigmoid(W_r x + b_ir + U_r h + b_hr)
        z = sigmoid(W_z x + b_iz + U_z h + b_hz)
        n = tanh(W_n x + b_in + r * (U_n h + b_hn))
        h' = (1 - z) * n + z * h
    """

    num_gates = 3
    mode = "gru"

    def step(self, F, x_proj, states, params):
        h = states[0]
        i_r, i_z, i_n = self.gates(F, x_proj)
        h_r, h_z, h_n = self.gates(F, self.recurrent_projection(F, h, params))
        r = sigmoid(F, i_r + h_r)
        z = sigmoid(F, i_z + h_z)
        n = tanh(F, i_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return h_new, [h_new]


class LSTMCell(RecurrentCell):
    """Long short-term memory cell with explicit gates and cell state.

    Equations (gate order ``i, f, g, o``; ``*`` is elementwise)::

        a = W x + b_i + U h + b_h                      (N, 4H), split into a_i a_f a_g a_o
        a = LN_gates(a)                                if layer_norm (per gate, own gamma/beta)
        i = sigmoid(a_i + p_i * c)   f = sigmoid(a_f + p_f * c)   (p_* only with peephole)
        g = tanh(a_g)
        c' = clip(f * c + i * g, cell_clip)            (clip only if cell_clip is set)
        o = sigmoid(a_o + p_o * c')
        h' = o * tanh(LN_c(c'))                        (LN_c only with layer_norm)
        h' = clip(W_r h', hidden_clip)                 (W_r only with projection_size)

    Parameters
    ----------
    hidden_size : int
        ``H``, the size of the cell state.
    input_size : int
        ``C``; 0 infers it from the first input.
    forget_bias : float
        Initial value of the forget gate's bias (in ``i2h_bias``; in ``ln_beta`` with
        layer norm, where the biases before the normalisation cancel out). Default 1.
    chrono_init : int or None
        Instead of ``forget_bias``: :class:`ChronoBias` for dependencies up to this many
        steps (e.g. the sequence length of a long-memory task).
    peephole : bool
        Connections from the cell state to the gates (Gers & Schmidhuber 2000).
    layer_norm : bool
        Layer normalisation of each gate's pre-activation and of the cell state before the
        output ``tanh`` (Ba et al. 2016). gamma/beta are this cell's own parameters.
    cell_clip, hidden_clip : float or None
        Clip the cell state / the output to ``[-v, v]``.
    projection_size : int or None
        ``P``: project ``h`` to ``P`` features with ``h2r_weight (P, H)`` (LSTMP).
    """

    num_gates = 4
    mode = "lstm"

    def __init__(
        self,
        hidden_size: int,
        input_size: int = 0,
        forget_bias: float = 1.0,
        peephole: bool = False,
        layer_norm: bool = False,
        cell_clip: float | None = None,
        hidden_clip: float | None = None,
        projection_size: int | None = None,
        layer_norm_eps: float = 1e-5,
        chrono_init: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("cell_clip", cell_clip), ("hidden_clip", hidden_clip),
                            ("projection_size", projection_size)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive or None, got {value}")
        gate_bias = ChronoBias(chrono_init) if chrono_init else mx.init.LSTMBias(forget_bias)
        if not layer_norm:
            kwargs.setdefault("i2h_bias_initializer", gate_bias)
        super().__init__(hidden_size, input_size=input_size,
                         recurrent_size=projection_size, **kwargs)
        self.forget_bias = forget_bias
        self.peephole = peephole
        self.layer_norm = layer_norm
        self.cell_clip = cell_clip
        self.hidden_clip = hidden_clip
        self.projection_size = projection_size
        self.layer_norm_eps = layer_norm_eps
        h = hidden_size
        if peephole:
            for gate in ("i", "f", "o"):
                setattr(self, f"peep_{gate}", self.params.get(f"peep_{gate}", shape=(h,),
                                                              init="zeros"))
        if layer_norm:
            self.ln_gamma = self.params.get("ln_gamma", shape=(4 * h,), init="ones")
            self.ln_beta = self.params.get("ln_beta", shape=(4 * h,), init=gate_bias)
            self.ln_c_gamma = self.params.get("ln_c_gamma", shape=(h,), init="ones")
            self.ln_c_beta = self.params.get("ln_c_beta", shape=(h,), init="zeros")
        if projection_size:
            self.h2r_weight = self.params.get("h2r_weight", shape=(projection_size, h))

    @property
    def is_plain(self) -> bool:
        return not (self.peephole or self.layer_norm or self.cell_clip or self.hidden_clip
                    or self.projection_size)

    @property
    def output_size(self) -> int:
        return self.projection_size or self.hidden_size

    def state_info(self, batch_size: int = 0) -> list[dict]:
        """``[h (N, P or H), c (N, H)]``."""
        return [{"shape": (batch_size, self.output_size)},
                {"shape": (batch_size, self.hidden_size)}]

    def _normalize(self, F, a, groups: int, gamma, beta):
        """Layer norm of ``a (N, groups*H)`` within each group of ``H`` features."""
        grouped = F.reshape(a, shape=(0, groups, -1))
        centred = F.broadcast_sub(grouped, F.mean(grouped, axis=2, keepdims=True))
        scale = F.rsqrt(F.mean(F.square(centred), axis=2, keepdims=True) + self.layer_norm_eps)
        normed = F.reshape(F.broadcast_mul(centred, scale), shape=(0, -1))
        return F.broadcast_add(F.broadcast_mul(normed, gamma), beta)

    def step(self, F, x_proj, states, params):
        h, c = states
        a = x_proj + self.recurrent_projection(F, h, params)
        if self.layer_norm:
            a = self._normalize(F, a, 4, params["ln_gamma"], params["ln_beta"])
        a_i, a_f, a_g, a_o = self.gates(F, a)
        if self.peephole:
            a_i = a_i + F.broadcast_mul(c, params["peep_i"])
            a_f = a_f + F.broadcast_mul(c, params["peep_f"])
        c_new = sigmoid(F, a_f) * c + sigmoid(F, a_i) * tanh(F, a_g)
        if self.cell_clip:
            c_new = F.clip(c_new, -self.cell_clip, self.cell_clip)
        if self.peephole:
            a_o = a_o + F.broadcast_mul(c_new, params["peep_o"])
        c_out = c_new
        if self.layer_norm:
            c_out = self._normalize(F, c_new, 1, params["ln_c_gamma"], params["ln_c_beta"])
        h_new = sigmoid(F, a_o) * tanh(F, c_out)
        if self.projection_size:
            h_new = F.FullyConnected(h_new, params["h2r_weight"], no_bias=True,
                                     num_hidden=self.projection_size)
        if self.hidden_clip:
            h_new = F.clip(h_new, -self.hidden_clip, self.hidden_clip)
        return h_new, [h_new, c_new]


CELL_TYPES: dict[str, type[RecurrentCell]] = {
    "lstm": LSTMCell,
    "gru": GRUCell,
    "rnn": RNNCell,
}


def make_cell(cell_type: str, hidden_size: int, **kwargs: Any) -> RecurrentCell:
    """Build a cell by name (``'lstm'``, ``'gru'``, ``'rnn'``); unknown names raise ConfigError."""
    try:
        cls = CELL_TYPES[cell_type]
    except KeyError:
        raise ConfigError(
            f"unknown cell type {cell_type!r}; choose one of {sorted(CELL_TYPES)}") from None
    return cls(hidden_size, **kwargs)

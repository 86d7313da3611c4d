"""Recurrent layers: run a cell over time, stacked and bidirectional, with exact lengths.

A layer owns time, masks, states and direction; the cell (:mod:`mxlstm.blocks.cells`) owns one
step. There is one parameter layout (MXNet's fused one: ``l0_i2h_weight``,
``r0_h2h_bias``, ...) and two ways to run it:

* **fused** — MXNet's ``RNN`` operator (oneDNN on CPU, cuDNN on GPU), see
  :mod:`mxlstm.blocks._fused`. Used when it computes exactly what the cells would.
* **cells** — the gate-level path: the input projection of all steps in one matrix
  product, then ``F.contrib.foreach`` over time, so one hybridized graph serves any ``T``.

``fused='auto'`` (default) takes the fused path whenever it is exact and logs which path
ran; ``fused=True`` raises if it is not exact; ``fused=False`` always runs the cells.

Variable lengths: pass ``valid_length (N,)``. Sequences are right-padded; outputs past a
sequence's end are zero and final states are those of its last valid step, exactly as if
each sequence ran alone. The fused operator's own ``use_sequence_length`` is never used
(on CPU it is silently ignored); instead the forward direction runs as is (its valid
steps never see the padding) and the reverse direction runs on ``SequenceReverse``'d
input. Final states of padded batches are only known on the cells path, so
``return_states=True`` with lengths runs the cells.
"""

from __future__ import annotations

import logging
from typing import Any

import mxnet as mx
from mxnet.gluon import HybridBlock

from mxlstm.blocks import _fused as fused_ops
from mxlstm.blocks._sequence import length_mask, reverse_time, zeros_like_state
from mxlstm.blocks.cells import RecurrentCell, make_cell
from mxlstm.blocks.regularize import check_rate, drop_weights, variational_mask, zoneout
from mxlstm.errors import ConfigError
from mxlstm.kernels import layer as kernel_layer

log = logging.getLogger(__name__)


class _CellTable:
    """Holds the step logic of each (layer, direction); not a Gluon child (the layer owns
    the parameters under MXNet's fused names)."""

    def __init__(self) -> None:
        self.cells: list[RecurrentCell] = []
        self.keys: list[str] = []  # 'l0', 'r0', 'l1', ...


class RecurrentLayer(HybridBlock):
    """A stack of recurrent cells run over time.

    Parameters
    ----------
    cell_type : {'lstm', 'gru', 'rnn'}
    hidden_size : int
        ``H``.
    num_layers : int
    bidirectional : bool
        Outputs then have ``2 * H`` features (forward then reverse).
    layout : {'NTC', 'TNC'}
    input_size : int
        ``C``; 0 infers it at the first call.
    dropout : float
        Dropout on the outputs of every layer but the last.
    return_states : bool
        Also return the final states.
    fused : 'auto', True or False
        Fast-path policy (see the module docstring).
    weight_dropout : float
        DropConnect on ``h2h_weight`` (composes with the fused path).
    recurrent_dropout : float
        Variational dropout on ``h`` before the recurrent product (cells path).
    zoneout : float
        Zoneout probability on all states (cells path).
    one_op_per_layer, split_directions : bool
        Export forms of the fused path for calls without ``valid_length``: every layer as
        its own 1-layer ``RNN`` op (mx2onnx converts no multi-layer op), and with
        ``split_directions`` each direction as its own op, the reverse one on
        ``reverse(x)`` (exact because every row is read to its end).
    **cell_kwargs
        Passed to the cell (e.g. ``forget_bias``, ``peephole``, ``layer_norm``,
        ``cell_clip``, ``hidden_clip``, ``projection_size``, ``activation``).

    Inputs (positional; Gluon 1.x takes no keyword inputs)
        ``x``: ``(N, T, C)`` (or ``(T, N, C)``);
        ``valid_length``: ``(N,)`` lengths, or None;
        ``states``: list of begin states, each ``(L*D, N, H)`` (LSTM: ``[h, c]``), or None
        for zeros.
    Outputs
        ``out``: ``(N, T, D*H)`` (or ``(T, N, D*H)``); with ``return_states`` also the list
        of final states, each ``(L*D, N, H)``, ordered ``l0, r0, l1, r1, ...``.
    """

    def __init__(
        self,
        cell_type: str,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        layout: str = "NTC",
        input_size: int = 0,
        dropout: float = 0.0,
        return_states: bool = False,
        fused: bool | str = "auto",
        weight_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        one_op_per_layer: bool = False,
        split_directions: bool = False,
        prefix: str | None = None,
        params: Any = None,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__(prefix=prefix, params=params)
        self._options = {
            "cell_type": cell_type, "hidden_size": hidden_size, "num_layers": num_layers,
            "bidirectional": bidirectional, "layout": layout, "input_size": input_size,
            "dropout": dropout, "return_states": return_states, "fused": fused,
            "weight_dropout": weight_dropout, "recurrent_dropout": recurrent_dropout,
            "zoneout": zoneout, "one_op_per_layer": one_op_per_layer,
            "split_directions": split_directions, **cell_kwargs}
        if layout not in ("NTC", "TNC"):
            raise ConfigError(f"layout must be 'NTC' or 'TNC', got {layout!r}")
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {num_layers}")
        if fused not in ("auto", True, False):
            raise ConfigError(f"fused must be 'auto', True or False, got {fused!r}")
        self.cell_type = cell_type
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.directions = ("l", "r") if bidirectional else ("l",)
        self.layout = layout
        self.dropout = check_rate("dropout", dropout)
        self.weight_dropout = check_rate("weight_dropout", weight_dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.zoneout = check_rate("zoneout", zoneout)
        self.return_states = return_states
        self.fused = fused
        self.one_op_per_layer = one_op_per_layer
        self.split_directions = split_directions
        self._table = _CellTable()
        self._logged_paths: set[str] = set()
        size = input_size
        for layer in range(num_layers):
            for d in self.directions:
                key = f"{d}{layer}"
                with self.name_scope():
                    cell = make_cell(cell_type, hidden_size, input_size=size,
                                     prefix=key + "_", **cell_kwargs)
                self.params.update(cell.params)
                for short, param in cell._reg_params.items():
                    setattr(self, f"{key}_{short}", param)
                self._table.cells.append(cell)
                self._table.keys.append(key)
            size = self._table.cells[-1].output_size * len(self.directions)
        self.output_size = size
        if fused is True and self.fused_reason(False) is not None:
            raise ConfigError("fused=True but the fused operator is not exact here: "
                              + self.fused_reason(False))

    # -- public helpers ---------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return len(self.directions)

    @property
    def mode(self) -> str:
        """The fused operator's name for the cell: 'lstm', 'gru', 'rnn_tanh', 'rnn_relu'."""
        return self._table.cells[0].mode

    def options(self) -> dict:
        """The constructor arguments (without ``prefix`` / ``params``): a copy is
        ``RecurrentLayer(**layer.options())``; see :meth:`variant` for one that shares the
        parameters."""
        return dict(self._options)

    def variant(self, **changes: Any) -> RecurrentLayer:
        """This layer rebuilt with ``changes`` to its options, on the same Parameter
        objects (same prefix, shared ``ParameterDict``): e.g. a streaming copy
        ``layer.variant(return_states=True)``.

        >>> from mxlstm import LSTM
        >>> trained = LSTM(8, input_size=3)
        >>> trained.variant(return_states=True).l0_h2h_weight is trained.l0_h2h_weight
        True
        """
        return RecurrentLayer(**{**self.options(), **changes}, prefix=self.prefix,
                              params=self.params)

    def state_info(self, batch_size: int = 0) -> list[dict]:
        """Shapes of the begin/final states: each ``(L*D, N, H)``."""
        ld = self.num_layers * self.num_directions
        return [{"shape": (ld,) + info["shape"]}
                for info in self._table.cells[0].state_info(batch_size)]

    def begin_state(self, batch_size: int, ctx: mx.Context | None = None,
                    dtype: str = "float32") -> list:
        """Zero begin states on ``ctx`` (the MXNet way: ``mx.cpu()``, ``mx.gpu(i)``)."""
        return [mx.nd.zeros(info["shape"], ctx=ctx, dtype=dtype)
                for info in self.state_info(batch_size)]

    def fused_reason(self, has_lengths: bool) -> str | None:
        """Why the fused operator would not be exact, or None when it is."""
        plain = all(cell.is_plain for cell in self._table.cells)
        if not plain:
            return "the cell has options the fused operator lacks (peephole, layer norm, " \
                   "clipping or projection)"
        if self.recurrent_dropout or self.zoneout:
            return "recurrent dropout / zoneout act inside the time loop"
        if has_lengths and self.return_states and kernel_layer.unusable_reason(self):
            return "final states of a padded batch are only exact on the cells path " \
                   "or the mxlstm kernel"
        return None

    def uses_fused(self, has_lengths: bool) -> bool:
        """Which path a call with (or without) ``valid_length`` takes."""
        reason = self.fused_reason(has_lengths)
        if self.fused is True and reason is not None:
            raise ConfigError(f"fused=True but the fused operator is not exact here: {reason}")
        use = self.fused is not False and reason is None
        if not use and dict(getattr(self, "_flags", [])).get("static_shape"):
            raise ConfigError(
                "hybridize(static_shape=True) makes MXNet 1.9.1 compute wrong values on the "
                "cells path (contrib.foreach after a matrix product); hybridize with "
                "static_alloc=True only")
        path = "fused" if use else "cells"
        if path not in self._logged_paths:
            self._logged_paths.add(path)
            why = f" ({kernel_layer.describe(self)})" if use else \
                f" ({'fused=False' if self.fused is False else reason})"
            log.info("%s: %s x%d%s runs on the %s path%s", self.name, self.cell_type,
                     self.num_layers, " bidirectional" if self.num_directions == 2 else "",
                     path, why)
        return use

    def _collect_params_with_prefix(self, prefix: str = "") -> dict:
        """Structural names as ``gluon.rnn.LSTM/GRU/RNN`` saves them (``_unfused.0.i2h_weight``,
        bidirectional ``_unfused.0.l_cell.i2h_weight``), so a checkpoint written by MXNet's
        fused layer loads here and back."""
        if prefix:
            prefix += "."
        bidirectional = self.num_directions == 2
        names = {}
        for index, key in enumerate(self._table.keys):
            d, layer = key[0], key[1:]
            where = f"_unfused.{layer}.{d}_cell." if bidirectional else f"_unfused.{layer}."
            for short in self._table.cells[index]._reg_params:
                names[prefix + where + short] = self._reg_params[f"{key}_{short}"]
        for name, child in self._children.items():
            names.update(child._collect_params_with_prefix(prefix + name))
        return names

    # -- forward ----------------------------------------------------------------------
    def hybrid_forward(self, F, x, valid_length=None, states=None, **params):
        if self.layout == "NTC":
            x = F.swapaxes(x, 0, 1)
        if valid_length is not None:
            valid_length = F.cast(valid_length, dtype="float32")
        if states is not None and not isinstance(states, (list, tuple)):
            states = [states]
        if self.uses_fused(valid_length is not None):
            out, finals = fused_ops.run(self, F, x, valid_length, states, params)
        else:
            out, finals = self._run_cells(F, x, valid_length, states, params)
        if self.layout == "NTC":
            out = F.swapaxes(out, 0, 1)
        return (out, finals) if self.return_states else out

    def cell_params(self, index: int, params: dict) -> dict:
        """The parameters of cell ``index`` under their short names (``i2h_weight``, ...)."""
        key = self._table.keys[index]
        cell = self._table.cells[index]
        return {short: params[f"{key}_{short}"] for short in cell._reg_params}

    def _run_cells(self, F, x, valid_length, states, params):
        mask = None
        if valid_length is not None:
            mask = length_mask(F, x, valid_length)  # (T, N)
        finals: list[list] = []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for di, d in enumerate(self.directions):
                index = layer * self.num_directions + di
                begin = self._begin_states(F, x, states, index)
                seq = layer_in if d == "l" else reverse_time(F, layer_in, valid_length)
                out, final = self._unroll(F, index, seq, mask, begin, params)
                outs.append(out if d == "l" else reverse_time(F, out, valid_length))
                finals.append(final)
            layer_in = outs[0] if len(outs) == 1 else F.concat(*outs, dim=2)
            if self.dropout and layer < self.num_layers - 1:
                layer_in = F.Dropout(layer_in, p=self.dropout)
        stacked = [F.stack(*[final[k] for final in finals], axis=0)
                   for k in range(len(finals[0]))]
        return layer_in, stacked

    def _begin_states(self, F, x, states, index: int) -> list:
        """Begin states of cell ``index``: slices of the given states, or zeros from ``x``."""
        cell = self._table.cells[index]
        if states is not None:
            return [F.squeeze(F.slice_axis(s, axis=0, begin=index, end=index + 1), axis=0)
                    for s in states]
        return [zeros_like_state(F, x, info["shape"][1]) for info in cell.state_info()]

    def _unroll(self, F, index: int, seq, mask, begin: list, params: dict):
        """Run cell ``index`` over ``seq (T, N, C)``; returns ``(out (T, N, H), final)``."""
        cell = self._table.cells[index]
        p = self.cell_params(index, params)
        p["h2h_weight"] = drop_weights(F, p["h2h_weight"], self.weight_dropout)
        x_proj = cell.project_input(F, seq, p)  # (T, N, G*H): one product for all steps
        rec_mask = variational_mask(F, begin[0], self.recurrent_dropout) \
            if self.recurrent_dropout else None
        zone_p = self.zoneout

        def body(data, old):
            h_in = old[0] * rec_mask if rec_mask is not None else old[0]
            out, new = cell.step(F, data[0], [h_in] + list(old[1:]), p)
            if zone_p:
                new = [zoneout(F, n, o, zone_p) for n, o in zip(new, old)]
                out = new[0]
            if mask is not None:
                m = data[1]
                new = [F.where(m, n, o) for n, o in zip(new, old)]
                out = F.where(m, out, F.zeros_like(out))
            return out, new

        data = [x_proj] if mask is None else [x_proj, mask]
        # distinct symbols for every state (foreach rejects one symbol given twice)
        begin = [begin[0]] + [F.identity(s) for s in begin[1:]]
        return F.contrib.foreach(body, data, begin)


class LSTM(RecurrentLayer):
    """:class:`RecurrentLayer` of :class:`~mxlstm.blocks.cells.LSTMCell` (states ``[h, c]``)."""

    def __init__(self, hidden_size: int, num_layers: int = 1, **kwargs: Any) -> None:
        super().__init__("lstm", hidden_size, num_layers, **kwargs)


class GRU(RecurrentLayer):
    """:class:`RecurrentLayer` of :class:`~mxlstm.blocks.cells.GRUCell` (states ``[h]``)."""

    def __init__(self, hidden_size: int, num_layers: int = 1, **kwargs: Any) -> None:
        super().__init__("gru", hidden_size, num_layers, **kwargs)


class RNN(RecurrentLayer):
    """:class:`RecurrentLayer` of :class:`~mxlstm.blocks.cells.RNNCell` (states ``[h]``)."""

    def __init__(self, hidden_size: int, num_layers: int = 1, **kwargs: Any) -> None:
        super().__init__("rnn", hidden_size, num_layers, **kwargs)

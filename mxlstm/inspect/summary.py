"""The numbers of ``summary.json``: saturation per gate and unit, the units whose state
follows named features best, and the gradient flow, over many examples of a run.

Sequence tasks: the first ``max_examples`` test examples, in batches. Language models: the
first ``max_tokens`` tokens of the test stream as ``batch_size`` parallel streams read in
windows with the state carried over, so a whole novel is read as the model reads it,
without holding every gate of every step in memory.
"""

from __future__ import annotations

import numpy as np

from mxlstm.inspect.examples import Examples
from mxlstm.inspect.features import Correlator, best_units, position_features, token_features
from mxlstm.inspect.gates import GATES
from mxlstm.inspect.gradients import GradientFlow, gradient_flow
from mxlstm.inspect.parts import view_of
from mxlstm.inspect.saturation import HIGH, LOW
from mxlstm.inspect.trace import Trace, trace

MAX_CHANNEL_FEATURES = 16


def state_part(cell_type: str) -> str:
    """The state correlated with features: the LSTM's cell state, else ``h``."""
    return "c" if cell_type == "lstm" else "h"


class Accumulator:
    """Saturation counts and feature correlations of every (layer, direction)."""

    def __init__(self) -> None:
        self.steps = 0
        self.counts: dict = {}
        self.correlators: dict[str, Correlator] = {}
        self.cell_type = ""

    def add(self, tr: Trace, features: dict[str, np.ndarray]) -> None:
        """One traced batch; ``features`` ``(N, T)`` each, read at the valid steps."""
        mask = tr.mask()
        self.cell_type = tr.cell_type
        self.steps += int(mask.sum())
        chosen = {name: value[mask] for name, value in features.items()}
        for key, parts in tr.parts.items():
            for gate in GATES[tr.cell_type]:
                values = parts[gate][mask]
                left, right = self.counts.setdefault(key, {}).setdefault(
                    gate, [np.zeros(values.shape[1]), np.zeros(values.shape[1])])
                left += (values < LOW).sum(axis=0)
                right += (values > HIGH).sum(axis=0)
            self.correlators.setdefault(key, Correlator()).add(
                parts[state_part(tr.cell_type)][mask], chosen)

    def saturation(self) -> dict:
        """Like :func:`~mxlstm.inspect.saturation.saturation`, over everything added."""
        out: dict = {key: {} for key in self.correlators}
        for key, gates in self.counts.items():
            for gate, (left, right) in gates.items():
                out[key][gate] = {"left": left / self.steps, "right": right / self.steps}
        return out

    def correlations(self) -> dict[str, dict[str, np.ndarray]]:
        return {key: c.result() for key, c in self.correlators.items()}


def _sequence_features(ex: Examples, x: np.ndarray, tr: Trace) -> dict:
    """Position in the sequence and, for numeric series of few channels, each channel:
    of the input, or of the series the encoder read when the model rewrites it (a series
    model's per-series normalisation and window averaging; steps are then windows)."""
    if view_of(ex.model).own_series:
        x = tr.inputs
    features = position_features(tr.valid_length, tr.outputs.shape[1])
    if ex.itos is None and x.ndim == 3 and x.shape[2] <= MAX_CHANNEL_FEATURES:
        for k in range(x.shape[2]):
            features[f"input_{k}"] = x[:, :, k].astype(np.float64)
    return features


def summarize(ex: Examples, max_examples: int = 256, max_tokens: int = 100_000,
              batch_size: int = 64) -> tuple[Accumulator, GradientFlow]:
    """Trace many examples of ``ex``; returns the accumulated numbers and the gradient
    flow of the first batch."""
    acc = Accumulator()
    flow = None
    if ex.is_lm:
        ids = ex.stream[:max_tokens + 1]
        streams = max(1, min(batch_size, (len(ids) - 1) // ex.steps))
        length = (len(ids) - 1) // streams
        columns = ids[:streams * length].reshape(streams, length)
        targets = ids[1:streams * length + 1].reshape(streams, length)
        feats = [token_features([ex.itos[int(t)] for t in row], ex.char_level)
                 for row in columns]
        states = None
        for start in range(0, length, ex.steps):
            x = columns[:, start:start + ex.steps]
            if flow is None:
                flow = gradient_flow(ex.model, x, targets[:, start:start + ex.steps])
            tr = trace(ex.model, x, states=states)
            states = tr.final_states
            acc.add(tr, {name: np.stack([f[name][start:start + ex.steps] for f in feats])
                         for name in feats[0]})
        return acc, flow
    count = min(len(ex), max_examples)
    for start in range(0, count, batch_size):
        x, y, lengths = ex.batch(range(start, min(count, start + batch_size)))
        if flow is None:
            flow = gradient_flow(ex.model, x, y, lengths, kind=ex.spec.kind)
        tr = trace(ex.model, x, lengths)
        acc.add(tr, _sequence_features(ex, x, tr))
    return acc, flow


def summary_json(acc: Accumulator, flow: GradientFlow, top: int = 3) -> dict:
    """JSON-able: saturation table, best units per feature (and per key), gradient ratios."""
    from mxlstm.inspect.saturation import saturation_table

    corr = acc.correlations()
    return {
        "cell": acc.cell_type,
        "steps": acc.steps,
        "state": state_part(acc.cell_type),
        "saturation": saturation_table(acc.saturation()),
        "top_units": {key: best_units(c, top) for key, c in corr.items()},
        "gradient_flow": {
            "loss": flow.loss,
            "early_over_late": {k: _finite(v) for k, v in flow.ratios().items()},
            "note": "mean |d loss/d h_t| over the first 10% of steps / over the last 10%",
        },
    }


def _finite(value: float):
    return float(value) if np.isfinite(value) else None

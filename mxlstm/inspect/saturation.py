"""``saturation``: how often each gate unit is nearly shut or nearly open.

Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015),
call a gate left-saturated at a step when its activation is below 0.1 and right-saturated
above 0.9, and plot, per unit, the fraction of steps of each kind (a unit near the
right-hand edge of the forget-gate scatter is an integrator that remembers).
"""

from __future__ import annotations

import numpy as np

from mxlstm.inspect.gates import GATES
from mxlstm.inspect.trace import Trace

LOW, HIGH = 0.1, 0.9


def saturation(tr: Trace, low: float = LOW, high: float = HIGH
               ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per (layer, direction), gate and unit, the fraction of valid steps below ``low``
    and above ``high``.

    Returns ``{key: {gate: {'left': (H,), 'right': (H,)}}}`` over the sigmoid gates of the
    cell type (LSTM ``i f o``, GRU ``r z``; a plain RNN has none, so its entries are
    empty). Steps past each sequence's length are not counted.
    """
    mask = tr.mask()  # (N, T)
    steps = mask.sum()
    result: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for key, parts in tr.parts.items():
        result[key] = {}
        for gate in GATES[tr.cell_type]:
            values = parts[gate][mask]  # (valid steps, H)
            result[key][gate] = {"left": (values < low).sum(axis=0) / steps,
                                 "right": (values > high).sum(axis=0) / steps}
    return result


def saturation_table(sat: dict) -> dict:
    """JSON-able summary: per key and gate, the mean fractions and the units most often
    left- and right-saturated."""
    table: dict = {}
    for key, gates in sat.items():
        table[key] = {}
        for gate, fr in gates.items():
            left, right = fr["left"], fr["right"]
            table[key][gate] = {
                "mean_left": round(float(left.mean()), 4),
                "mean_right": round(float(right.mean()), 4),
                "most_left": [[int(u), round(float(left[u]), 4)]
                              for u in np.argsort(-left, kind="stable")[:3]],
                "most_right": [[int(u), round(float(right[u]), 4)]
                               for u in np.argsort(-right, kind="stable")[:3]],
                "left": [round(float(v), 4) for v in left],
                "right": [round(float(v), 4) for v in right],
            }
    return table

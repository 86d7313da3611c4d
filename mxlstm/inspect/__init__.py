"""Look inside the memory cell: gates, cell state and gradient flow of a trained model.

=============================  ==============================================================
:func:`trace`                  every gate, candidate, cell and hidden state ``(N, T, H)`` per
                               layer and direction, from the gate-level equations
:func:`model_outputs`          the model's outputs from a trace (equal to its fused forward)
:func:`gradient_flow`          norms of ``d loss / d h_t`` and ``d loss / d x_t`` per step
:func:`saturation`             per gate and unit, fractions of steps below 0.1 / above 0.9
=============================  ==============================================================

The command ``mxlstm inspect`` (:mod:`mxlstm.inspect.command`) writes all of it for a run
directory; see ``docs/inspect.md``.
"""

from mxlstm.inspect.gradients import GradientFlow, gradient_flow
from mxlstm.inspect.saturation import saturation
from mxlstm.inspect.trace import Trace, model_outputs, trace

__all__ = ["GradientFlow", "Trace", "gradient_flow", "model_outputs", "saturation", "trace"]

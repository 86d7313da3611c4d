"""``mxlstm inspect``: trace a trained run and write what its memory cells do.

Writes into ``--out DIR``::

    trace.npz       the chosen examples' parts, '<key>/<part>' (N, T, H), valid_length,
                    'input' (N, T, E) what the encoder read, 'stride' (steps averaged into
                    one, series model), 'side/<name>' (its conv branch's input), index,
                    and 'grad/<key>' (T,) gradient norms
    summary.json    saturation table, top units by correlation with named features,
                    gradient-flow ratios, tokens of the chosen examples
    *.png           with matplotlib: heatmaps, saturation scatter, gradient flow,
                    (character models) text coloured by the best units
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mxlstm.errors import ConfigError
from mxlstm.inspect import plots
from mxlstm.inspect.examples import Examples, check_choices, load_examples
from mxlstm.inspect.summary import state_part, summarize, summary_json
from mxlstm.inspect.trace import Trace, trace

MAX_DEFAULT_UNITS = 16
PLOT_HINT = ("mxlstm: pictures need matplotlib: pip install 'mxlstm[plot]' (or "
             "'matplotlib>=3.5,<3.9'); trace.npz and summary.json are written")


def _chosen_trace(ex: Examples, indices: list[int]) -> Trace:
    """Trace of the chosen examples; a language model's window reads warm, after the
    window before it."""
    x, _, lengths = ex.batch(indices)
    if not ex.is_lm:
        return trace(ex.model, x, lengths)
    states = None
    if min(indices) > 0:
        before, _, _ = ex.batch([i - 1 if i > 0 else i for i in indices])
        states = trace(ex.model, before).final_states
        if 0 in indices:  # the novel's first window starts from zero
            for s in states:
                s[:, indices.index(0)] = 0
    return trace(ex.model, x, states=states)


def default_units(summary: dict, key: str, hidden: int) -> list[int]:
    """All units of a small layer, else the best-correlated ones, filled up to 16."""
    if hidden <= MAX_DEFAULT_UNITS:
        return list(range(hidden))
    chosen = [u for pairs in summary["top_units"][key].values() for u, _ in pairs[:2]]
    chosen = list(dict.fromkeys(chosen))[:MAX_DEFAULT_UNITS]
    rest = [u for u in range(hidden) if u not in chosen]
    return chosen + rest[:MAX_DEFAULT_UNITS - len(chosen)]


def run_inspect(model_dir: str, out: str, data: str | None = None, indices=None,
                units=None, tag: str = "best", steps: int = 0, max_examples: int = 256,
                max_tokens: int = 100_000) -> dict:
    """Everything ``mxlstm inspect`` does; returns what it printed as JSON."""
    for name, value in (("--steps", steps), ("--max-examples", max_examples),
                        ("--max-tokens", max_tokens)):
        if value < (0 if name == "--steps" else 1):
            raise ConfigError(f"{name} must be positive, got {value}")
    ex = load_examples(model_dir, data, tag, steps)
    what = f"the text (windows of {ex.steps} tokens)" if ex.is_lm else "the test set"
    indices = check_choices("--index", list(indices or [0]), len(ex), f"{what} of {model_dir}")
    tr = _chosen_trace(ex, indices)
    hidden = tr.parts["l0"]["h"].shape[2]
    if units:
        units = check_choices("--unit", list(units), hidden, f"each layer of {model_dir}")
    acc, flow = summarize(ex, max_examples, max_tokens)
    summary = summary_json(acc, flow)
    summary.update(model=str(model_dir), data=data or "the run's test split", task=ex.cfg.task,
                   stride=tr.stride, index=indices, tokens={str(i): ex.tokens(i) for i in indices}
                   if ex.itos else None)
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{out}: cannot make the output directory ({err.strerror})") \
            from None
    arrays = tr.arrays()
    arrays["index"] = np.array(indices)
    arrays.update({f"grad/{key}": v for key, v in flow.hidden.items()})
    arrays["grad/input"] = flow.inputs
    np.savez_compressed(out_dir / "trace.npz", **arrays)
    pictures = _pictures(ex, tr, acc, flow, summary, indices, units, out_dir)
    summary["pictures"] = pictures
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if pictures is None:
        print(PLOT_HINT, file=sys.stderr)
    return {"out": str(out_dir), "task": ex.cfg.task, "cell": tr.cell_type,
            "index": indices, "keys": tr.keys, "pictures": len(pictures or []),
            "gradient_early_over_late": summary["gradient_flow"]["early_over_late"]}


def _pictures(ex: Examples, tr: Trace, acc, flow, summary: dict, indices: list[int],
              units, out_dir: Path) -> list[str] | None:
    """Write the PNGs; None when matplotlib is missing."""
    if plots.import_pyplot() is None:
        return None
    written = []
    task = ex.cfg.task
    windows = f", steps = windows of {tr.stride}" if tr.stride > 1 else ""
    for key in tr.keys:
        shown = units or default_units(summary, key, tr.parts[key]["h"].shape[2])
        for row, index in enumerate(indices):
            name = f"heatmap-{key}-{index}.png"
            parts = {p: v[row] for p, v in tr.parts[key].items()}
            if plots.plot_heatmaps(parts, tr.cell_type, int(tr.valid_length[row]), shown,
                                   ex.tokens(index), f"{task} {tr.cell_type} layer {key}, "
                                   f"example {index}{windows}", out_dir / name):
                written.append(name)
        if plots.plot_saturation(acc.saturation()[key], f"{task}: gate saturation, {key} "
                                 f"({acc.steps} steps)", out_dir / f"saturation-{key}.png"):
            written.append(f"saturation-{key}.png")
    curves = {f"h {key}": v for key, v in flow.hidden.items()} | {"input x": flow.inputs}
    if plots.plot_gradient_flow(curves, f"{task} {tr.cell_type}: gradient norm per step"
                                f"{windows}",
                                out_dir / "gradient-flow.png"):
        written.append("gradient-flow.png")
    if ex.char_level:
        written += _unit_texts(ex, tr, summary, indices[0], out_dir)
    return written


def _unit_texts(ex: Examples, tr: Trace, summary: dict, index: int, out_dir: Path) -> list:
    """A character model's first chosen window coloured by the best unit of each feature
    (top layer)."""
    key = tr.keys[-1]
    text = "".join(ex.tokens(index))
    part = state_part(tr.cell_type)
    written = []
    for feature, pairs in summary["top_units"][key].items():
        unit, r = pairs[0]
        name = f"text-{key}-{feature}.png"
        values = tr.parts[key][part][indices_row(index, summary), :len(text), unit]
        if plots.plot_unit_text(text, values, f"{key} unit {unit} ({part}), r = {r:+.2f} "
                                f"with {feature}", out_dir / name):
            written.append(name)
    return written


def indices_row(index: int, summary: dict) -> int:
    return summary["index"].index(index)

"""The few plain lines a person reads at the end of a run (``mxlstm train`` prints them on
stderr; stdout keeps one JSON line for scripts)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

# kind of task -> (test metric, how to show it, baseline key, baseline name)
_HEADLINES = {
    "accuracy": ("accuracy", "{:.1%}", "majority_accuracy", "majority class"),
    "perplexity": ("perplexity", "{:.1f}", "unigram_perplexity", "unigram model"),
    "mse": ("mse", "{:.3g}", "mean_predictor_mse", "predicting the mean"),
    "nll": ("loss", "{:.3g} nats per step", "memoryless_nll", "memoryless guess"),
}


def _headline(report: dict) -> str:
    test, baseline = report.get("test", {}), report.get("baseline", {})
    usable = [item for item in _HEADLINES.items()
              if item[1][0] in test and item[1][2] in baseline]
    usable += [item for item in _HEADLINES.items() if item[1][0] in test]
    for name, (key, fmt, base_key, base_name) in usable:
        label = "test NLL" if name == "nll" else f"test {name}"
        text = f"{label} {_fmt(fmt, test[key])}"
        base = baseline.get(base_key)
        if base is not None:
            text += f" ({base_name} {_fmt(fmt, base)})"
        if name == "nll" and "accuracy" in test:
            text += f", per-symbol accuracy {test['accuracy']:.1%} (blanks included)"
        return text
    return "test " + ", ".join(f"{k} {_fmt('{:.4g}', v)}" for k, v in test.items()
                               if isinstance(v, float))


def _fmt(fmt: str, value) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    return fmt.format(value)


def _seconds(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def summary_lines(report: dict, out: str | Path) -> list[str]:
    """Two or three sentences: the test metric against its baseline, the best epoch, the
    time, where the files are and the commands to run next."""
    out = str(out)
    first = _headline(report)
    first = first[:1].upper() + first[1:]
    planned = report.get("epochs_planned") or report.get("epochs_run")
    first += (f", best epoch {report.get('best_epoch')} of {planned}"
              f" (by valid {report.get('monitor')}), {_seconds(report.get('seconds'))}")
    quoted = shlex.quote(out)
    name = Path(out.rstrip("/")).name or "model"
    return [first + ".",
            f"Saved to {out} (report.json, metrics.jsonl, checkpoints/best).",
            f"Next: mxlstm report {quoted} | mxlstm evaluate --model {quoted} | "
            f"mxlstm export --model {quoted} --out export/{shlex.quote(name)}"]

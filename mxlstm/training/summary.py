"""The few plain lines a person reads at the end of a run (``mxlstm train`` prints them on
stderr; stdout keeps one JSON line for scripts)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

# kind of task -> (test metric, how to show it, baseline key, baseline name); a key
# "a.b" reads baseline["a"]["b"]
_HEADLINES = {
    "accuracy": ("accuracy", "{:.1%}", "majority_accuracy", "majority class"),
    "perplexity": ("perplexity", "{:.1f}", "unigram_perplexity", "unigram model"),
    "rmse": ("rmse", "{:.3g}", "mean_predictor.rmse", "predicting the mean"),
    "mse": ("mse", "{:.3g}", "mean_predictor_mse", "predicting the mean"),
    "nll": ("loss", "{:.3g} nats per step", "memoryless_nll", "memoryless guess"),
}
# the other baselines of a report, shown after the first when they were computed
_MORE_BASELINES = {
    "accuracy": (("1nn_euclidean_accuracy", "1-NN Euclidean"), ("1nn_dtw_accuracy", "1-NN DTW"),
                 ("bow_logistic_accuracy", "bag-of-words logistic regression")),
    "rmse": (("ridge.rmse", "ridge regression"),),
}


def _lookup(baseline: dict, key: str):
    value = baseline
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _headline(report: dict) -> str:
    test, baseline = report.get("test", {}), report.get("baseline", {})
    usable = [item for item in _HEADLINES.items()
              if item[1][0] in test and _lookup(baseline, item[1][2]) is not None]
    usable += [item for item in _HEADLINES.items() if item[1][0] in test]
    for name, (key, fmt, base_key, base_name) in usable:
        label = {"nll": "test NLL", "rmse": "test RMSE"}.get(name, f"test {name}")
        text = f"{label} {_fmt(fmt, test[key])}"
        shown = [(base_key, base_name)] + list(_MORE_BASELINES.get(name, ()))
        parts = [f"{what} {_fmt(fmt, _lookup(baseline, k))}" for k, what in shown
                 if isinstance(_lookup(baseline, k), int | float)]
        if parts:
            text += f" ({', '.join(parts)})"
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


def _each(value) -> str:
    """An epoch, or one per ensemble member as ``2 / 2 / 3``."""
    return " / ".join(map(str, value)) if isinstance(value, list) else str(value)


def summary_lines(report: dict, out: str | Path) -> list[str]:
    """Two or three sentences: the test metric against its baseline, the best epoch, the
    time, where the files are and the commands to run next."""
    out = str(out)
    first = _headline(report)
    first = first[:1].upper() + first[1:]
    members = report.get("members")  # a seed ensemble: epochs are per member
    if members:
        first += f", {len(members)} seeds averaged"
    best = _each(report.get("best_epoch"))
    planned = _each(report.get("epochs_run") if members
                    else report.get("epochs_planned") or report.get("epochs_run"))
    epochs = "epochs" if members else "epoch"
    if (report.get("selection") or {}).get("select") == "last":
        first += f", the final {epochs} {best} kept"
    else:
        first += f", best {epochs} {best} of {planned} (by valid {report.get('monitor')})"
    first += f", {_seconds(report.get('seconds'))}"
    if report.get("resumed"):  # this process's time; the epochs ran in several
        first += (f" this session ({_seconds(report.get('train_seconds'))} in training "
                  f"steps over all sessions)")
    quoted = shlex.quote(out)
    name = Path(out.rstrip("/")).name or "model"
    files = ("report.json; each member's metrics.jsonl and checkpoints in members/seed-S/"
             if members else "report.json, metrics.jsonl, checkpoints/best")
    return [first + ".",
            f"Saved to {out} ({files}).",
            f"Next: mxlstm report {quoted} | mxlstm evaluate --model {quoted} | "
            f"mxlstm export --model {quoted} --out export/{shlex.quote(name)}"]

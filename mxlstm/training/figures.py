"""The pictures of a run: learning curves with what a reader looks for, and the confusion
matrix. Drawn at the end of ``mxlstm train`` and again by ``mxlstm report`` (also for runs
made by older versions); every function returns False when matplotlib is absent.

``curves.png``: a title naming the task and the test score; the loss panel (train and
validation), the monitored metric (validation per epoch, the test score and the baseline
as horizontal lines) and the learning rate per epoch; the best epoch marked in every
panel; whole-number epoch ticks.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from mxlstm.training.log import MetricsLog, _import_pyplot, _save, plot_confusion

log = logging.getLogger(__name__)

# monitored metric -> the baseline key of report.json that is in the same units
BASELINE_OF = {"accuracy": ("majority_accuracy", "majority class"),
               "perplexity": ("unigram_perplexity", "unigram model"),
               "mse": ("mean_predictor_mse", "predicting the mean"),
               "loss": ("memoryless_nll", "memoryless guess")}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], r[key]) for r in records if _number(r.get(key))
              and _number(r.get("epoch"))]
    return [int(e) for e, _ in points], [float(v) for _, v in points]


def regular_file(path: Path) -> bool:
    """True for an existing regular file (a FIFO in a run directory must not block)."""
    from mxlstm.data.validate import special_file_problem

    return path.is_file() and special_file_problem(path) is None


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics log, or [] if it is missing or not a regular file."""
    return MetricsLog.read(path) if regular_file(path) else []


def read_json(path: Path) -> dict:
    """A JSON object file, or {} if it is missing or damaged (figures are best effort)."""
    if not regular_file(path):
        return {}
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return tree if isinstance(tree, dict) else {}


def draw_curves(records: list[dict], report: dict, png_path: Path, title: str) -> bool:
    """Loss, monitored metric and learning rate per epoch into ``png_path``."""
    plt = _import_pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import MaxNLocator

    monitor = report.get("monitor") or next(
        (str(r["main_metric"]).removeprefix("valid_") for r in records
         if isinstance(r.get("main_metric"), str)), "loss")
    panels = [("loss", ["train_loss", "valid_loss"])]
    if monitor != "loss":
        panels.append((monitor, [f"valid_{monitor}"]))
    panels.append(("learning rate", ["lr"]))
    panels = [(name, keys) for name, keys in panels if any(_series(records, k)[0] for k in keys)]
    if not panels:
        return False
    best = report.get("best_epoch")
    test = report.get("test", {})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    try:
        for ax, (name, keys) in zip(axes[0], panels):
            for key in keys:
                xs, ys = _series(records, key)
                if xs:
                    ax.plot(xs, ys, marker="o", markersize=3, label=key.replace("_", " "))
            if name == monitor or (name == "loss" and monitor == "loss"):
                metric = "loss" if name == "loss" else monitor
                if _number(test.get(metric)):
                    ax.axhline(test[metric], color="tab:green", linestyle="-", linewidth=1,
                               label=f"test {metric} (best epoch) {test[metric]:.4g}")
                base_key, base_name = BASELINE_OF.get(metric, (None, None))
                base = report.get("baseline", {}).get(base_key)
                if _number(base):
                    ax.axhline(base, color="tab:gray", linestyle=":", linewidth=1.2,
                               label=f"{base_name} {base:.4g}")
            if _number(best):
                ax.axvline(best, color="tab:red", linestyle="--", linewidth=1,
                           label=f"best epoch {best}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title)
        _save(fig, png_path)
    finally:
        plt.close(fig)
    return True


def run_title(report: dict, config: dict) -> str:
    """``task digits: test accuracy 0.986 (majority class 0.1)`` style title."""
    task = report.get("task") or config.get("task", "?")
    monitor = report.get("monitor") or "loss"
    test = report.get("test", {})
    text = f"task {task}"
    if _number(test.get(monitor)):
        text += f": test {monitor} {test[monitor]:.4g}"
        base_key, base_name = BASELINE_OF.get(monitor, (None, None))
        base = report.get("baseline", {}).get(base_key)
        if _number(base):
            text += f" ({base_name} {base:.4g})"
    return text


def figures_after_training() -> bool:
    """False when ``MXLSTM_FIGURES=0`` is set: ``mxlstm train`` then skips the pictures
    (matplotlib's import and two PNGs, ~2 s a run); ``mxlstm report`` still draws them."""
    return os.environ.get("MXLSTM_FIGURES", "1").strip() != "0"


def draw_run_figures(run_dir: str | Path) -> list[Path]:
    """(Re)draw ``curves.png`` and ``confusion.png`` of a run directory; returns the files
    written (none without matplotlib)."""
    run_dir = Path(run_dir)
    written = []
    report, config = read_json(run_dir / "report.json"), read_json(run_dir / "config.json")
    records = read_metrics(run_dir / "metrics.jsonl")
    if records and draw_curves(records, report, run_dir / "curves.png",
                               run_title(report, config)):
        written.append(run_dir / "curves.png")
    confusion = report.get("test", {}).get("confusion")
    if confusion:
        names = read_json(run_dir / "meta.json").get("label_names")
        matrix = np.asarray(confusion)
        if not isinstance(names, list) or len(names) != len(matrix):
            names = None
        if plot_confusion(matrix, names, run_dir / "confusion.png"):
            written.append(run_dir / "confusion.png")
    return written

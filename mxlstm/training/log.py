"""Run logs a person can plot: JSON-lines metrics, JSON reports, PNG curves, python logging.

A metrics log holds one JSON object per line, written by :class:`MetricsLog`.  Records are
free-form; :func:`plot_curves` uses the per-epoch ones: records with an ``epoch`` key, no
``batch`` key and, if they have an ``event`` key, ``event == "epoch"``.  Nested dicts are
flattened with ``_`` (``{"valid": {"loss": 1.2}}`` reads as ``valid_loss``) and several
records of one epoch are merged, later values winning (so a resumed run that repeats an
epoch plots its last try).  Curves: ``loss`` / ``*_loss`` keys in one panel, and the main
metric in another: ``main_metric`` from a record if present, else the first of
accuracy, macro_f1, perplexity, rmse, mse, mae, bits_per_token, nll found as a key
``<name>`` or ``<prefix>_<name>`` (e.g. ``train_accuracy``, ``valid_accuracy``).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mxlstm.errors import DataError
from mxlstm.training.atomic import write_atomic
from mxlstm.training.checkpoint import PathLike, json_default

log = logging.getLogger(__name__)

_MAIN_METRICS = ("accuracy", "macro_f1", "perplexity", "rmse", "mse", "mae",
                 "bits_per_token", "nll")
_SPLIT_PREFIXES = ("train_", "valid_", "val_", "dev_", "test_")


class MetricsLog:
    """Append-only JSON-lines log of metric records.

    Parameters
    ----------
    path : path
        The ``.jsonl`` file; created (with its directory) on the first write, appended to
        when it exists, e.g. on resume.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._checked_end = False

    def write(self, record: dict) -> None:
        """Append ``record`` as one JSON line and flush (numpy / NDArray values converted)."""
        line = json.dumps(record, default=json_default).encode("utf-8") + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            if not self._checked_end:  # a crash may have left a line without its newline
                f.seek(0, 2)
                if f.tell() > 0:
                    f.seek(-1, 2)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                self._checked_end = True
            f.write(line)
            f.flush()

    def rewrite(self, records: list[dict]) -> None:
        """Replace the log atomically with ``records`` (those of a checkpoint, on resume)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, b"".join(json.dumps(r, default=json_default).encode("utf-8")
                                         + b"\n" for r in records))
        self._checked_end = True

    @staticmethod
    def read(path: PathLike) -> list[dict]:
        """Read all records of a metrics log.

        A malformed last line (a write cut short by a crash) is skipped silently; other
        malformed lines are skipped with a warning naming the line.

        Raises
        ------
        DataError
            If the file does not exist or cannot be read.
        """
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise DataError("metrics log not found", path=path) from None
        except OSError as err:
            raise DataError(f"cannot read metrics log ({err})", path=path) from None
        lines = data.split(b"\n")
        last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
        records = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif i == last and not data.endswith(b"\n"):
                log.debug("%s:%d: skipping truncated last line", path, i + 1)
            else:
                log.warning("%s:%d: skipping malformed line", path, i + 1)
        return records


def write_report(path: PathLike, report: dict) -> None:
    """Write ``report`` as indented JSON, atomically (numpy values converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report, indent=2, default=json_default) + "\n")


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}_"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _epoch_rows(records: list[dict]) -> dict[float, dict]:
    rows: dict[float, dict] = {}
    for record in records:
        epoch = record.get("epoch")
        if not _is_number(epoch) or "batch" in record or record.get("event", "epoch") != "epoch":
            continue
        rows.setdefault(epoch, {}).update(_flatten(record))
    return rows


def _strip_split(name: str) -> str:
    for prefix in _SPLIT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _import_pyplot():
    """Return ``matplotlib.pyplot`` on the Agg backend, or None if matplotlib is unusable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # absent, or incompatible with the installed numpy
        log.debug("matplotlib not available (%s): no plots", err)
        return None
    return plt


def plot_curves(log_path: PathLike, png_path: PathLike) -> bool:
    """Plot loss curves and the main metric per epoch from a metrics log into a PNG.

    Returns
    -------
    bool
        True if the PNG was written; False if matplotlib is not installed (or not usable)
        or the log has no per-epoch numbers to plot.
    """
    plt = _import_pyplot()
    if plt is None:
        return False
    rows = _epoch_rows(MetricsLog.read(log_path))
    keys = sorted({k for row in rows.values() for k, v in row.items() if _is_number(v)})
    main = next((_strip_split(str(r["main_metric"])) for r in rows.values()
                 if isinstance(r.get("main_metric"), str)), None)
    if main is None:
        main = next((m for m in _MAIN_METRICS if any(_strip_split(k) == m for k in keys)), None)
    panels = [("loss", [k for k in keys if k == "loss" or k.endswith("_loss")])]
    if main and main != "loss":
        panels.append((main, [k for k in keys if k == main or k.endswith("_" + main)]))
    panels = [(title, ks) for title, ks in panels if ks]
    if not panels:
        log.warning("%s: no per-epoch metrics to plot", log_path)
        return False
    epochs = sorted(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    try:
        for ax, (title, panel_keys) in zip(axes[0], panels):
            for key in panel_keys:
                xs = [e for e in epochs if _is_number(rows[e].get(key))]
                ax.plot(xs, [rows[e][key] for e in xs], marker="o", markersize=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        _save(fig, png_path)
    finally:
        plt.close(fig)
    return True


def _save(fig, png_path: PathLike) -> None:
    """Lay out ``fig`` and write it to ``png_path``, making its directory."""
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)


def plot_confusion(matrix, label_names: Sequence[str] | None, png_path: PathLike) -> bool:
    """Plot a confusion matrix (rows = true, columns = predicted) into a PNG.

    Cells are coloured by the fraction of their true class (row-normalised) and, for up to
    30 classes, annotated with counts.  Returns False if matplotlib is not usable.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    k = m.shape[0]
    names = [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} label names for a {k}x{k} confusion matrix")
    plt = _import_pyplot()
    if plt is None:
        return False
    frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = min(16.0, max(4.0, 0.45 * k + 2.5))
    fig, ax = plt.subplots(figsize=(side, side))
    try:
        image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(k), names, rotation=90 if k > 8 else 0)
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 30:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        _save(fig, png_path)
    finally:
        plt.close(fig)
    return True


def setup_logging(run_dir: PathLike, debug: bool = False, quiet: bool = False) -> Path:
    """Log to stderr (concise: ``HH:MM:SS L message``) and to ``run_dir/train.log``.

    Level INFO, or DEBUG for mxlstm's own loggers with ``debug``; ``quiet`` shows only
    warnings and errors on stderr (``train.log`` keeps everything).  Calling it again replaces
    the handlers it installed before.  Returns the path of ``train.log`` (appended to).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_mxlstm", False):
            root.removeHandler(handler)
            handler.close()
    level = logging.DEBUG if debug else logging.INFO
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    log_file = run_dir / "train.log"
    file = logging.FileHandler(log_file, encoding="utf-8")
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in (stream, file):
        handler.setLevel(logging.WARNING if quiet and handler is stream else level)
        handler._mxlstm = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    logging.getLogger("mxlstm").setLevel(level)
    return log_file

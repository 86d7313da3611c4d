"""``report.html``: one self-contained page per run that a person opens in a browser.

The page embeds the figures (PNG as data URIs), and shows the summary sentences, test
metrics beside every baseline, timings, the metrics of every epoch, the confusion matrix
and the configuration. Every value read from the run's files is HTML-escaped, so a label
name such as ``<script>`` is shown as text and never runs. No script, no external file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from mxlstm.errors import ModelFileError
from mxlstm.training.checkpoint import write_atomic
from mxlstm.training.figures import (
    draw_run_figures,
    read_json,
    read_metrics,
    regular_file,
    run_title,
)
from mxlstm.training.summary import summary_lines

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}td.k{text-align:left}
img{max-width:100%;border:1px solid #eee}.note{color:#666}"""


def _esc(value) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list], first_is_key: bool = True) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = [f"<td class='k'>{_esc(v)}</td>" if i == 0 and first_is_key else
                 f"<td>{_esc(v)}</td>" for i, v in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<p><img alt='{_esc(alt)}' src='data:image/png;base64,{data}'></p>"


def _epochs_table(records: list[dict]) -> str:
    keys = []
    for record in records:
        for key, value in record.items():
            if key not in keys and isinstance(value, int | float) and key != "step":
                keys.append(key)
    rows = [[r.get(k, "") for k in keys] for r in records]
    return _table(keys, rows, first_is_key=False) if records else "<p class='note'>none</p>"


def build_page(run_dir: Path, figures: list[Path], note: str | None = None) -> str:
    """The HTML text of ``run_dir``'s report page."""
    report, config = read_json(run_dir / "report.json"), read_json(run_dir / "config.json")
    meta = read_json(run_dir / "meta.json")
    records = read_metrics(run_dir / "metrics.jsonl")
    title = run_title(report, config) if report else f"{run_dir.name}: no report yet"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>"]
    if report:
        parts.append("".join(f"<p>{_esc(line)}</p>" for line in summary_lines(report, run_dir)))
    else:
        parts.append("<p class='note'>report.json is missing: the run has not finished.</p>")
    if note:
        parts.append(f"<p class='note'>{_esc(note)}</p>")
    parts.append("<h2>Figures</h2>" + ("".join(_image(f, f.stem) for f in figures) or
                                       "<p class='note'>no figures</p>"))
    test = {k: v for k, v in report.get("test", {}).items() if k != "confusion"}
    kept = (report.get("selection") or {}).get("model")  # train.select, since issue 15
    parts.append("<h2>Test metrics and baselines</h2>" + _table(
        ["", "value"], [[f"test {k}", v] for k, v in test.items()]
        + [[f"baseline {k}", v] for k, v in report.get("baseline", {}).items()]
        + [[k, report[k]] for k in ("best_epoch", "epochs_run", "epochs_planned", "monitor",
                                    "best_valid", "parameters", "seconds") if k in report]
        + ([["model kept", kept]] if kept else [])))
    seconds = [r["seconds"] for r in records if isinstance(r.get("seconds"), int | float)]
    speed = [r["sequences_per_second"] for r in records
             if isinstance(r.get("sequences_per_second"), int | float)]
    if seconds:
        parts.append("<h2>Timings</h2>" + _table(["", "value"], [
            ["training seconds (all epochs)", sum(seconds)],
            ["median seconds per epoch", sorted(seconds)[len(seconds) // 2]],
            ["median sequences per second", sorted(speed)[len(speed) // 2] if speed else ""],
            ["last session, seconds (report; the run was resumed)" if report.get("resumed")
             else "whole run, seconds (report)", report.get("seconds", "")]]))
    parts.append("<h2>Every epoch</h2>" + _epochs_table(records))
    confusion = report.get("test", {}).get("confusion")
    if confusion:
        names = meta.get("label_names")
        if not isinstance(names, list) or len(names) != len(confusion):
            names = [str(i) for i in range(len(confusion))]
        parts.append("<h2>Confusion matrix (rows true, columns predicted)</h2>" + _table(
            ["true \\ predicted", *names], [[n, *row] for n, row in zip(names, confusion)]))
    flat = [[f"{section}.{key}", value] for section, values in sorted(config.items())
            if isinstance(values, dict) for key, value in sorted(values.items())]
    parts.append("<h2>Configuration</h2>" + _table(["key", "value"], flat))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report_page(run_dir: str | Path) -> tuple[Path, list[Path]]:
    """(Re)draw the figures of ``run_dir`` and write ``report.html``; returns the page and
    the figures (empty without matplotlib: the page says so)."""
    run_dir = Path(run_dir)
    if not regular_file(run_dir / "config.json"):
        raise ModelFileError(f"{run_dir}: not a run directory (no config.json; make one with "
                             f"mxlstm train --out {run_dir})")
    figures = draw_run_figures(run_dir)
    from mxlstm.training.log import _import_pyplot

    note = None if _import_pyplot() is not None else (
        "Figures need matplotlib: pip install 'mxlstm[plot]' (make train installs it).")
    page = run_dir / "report.html"
    write_atomic(page, build_page(run_dir, figures, note))
    return page, figures

"""The end of a run for a person: summary sentences, figures with their marks, and the
self-contained report.html (checked as HTML, and rendered in headless Chromium when
Debian's chromium is installed)."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_bad_input import _clean_logging, _drop_run_log_handlers

from mxlstm.cli import main
from mxlstm.training.summary import summary_lines

__all__ = ["_clean_logging"]

SMALL = ["--set", "train.max_batches=2", "--set", "model.hidden_size=8",
         "--set", "train.progress=false", "--epochs", "2"]
HAS_PLOT = importlib.util.find_spec("matplotlib") is not None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "digits"
    with pytest.MonkeyPatch.context() as env:  # tests/conftest.py turns figures off
        env.setenv("MXLSTM_FIGURES", "1")
        assert main(["train", "--task", "digits", "--out", str(out), *SMALL]) == 0
    _drop_run_log_handlers()
    return out


def test_training_draws_the_figures_unless_turned_off(run, tmp_path, monkeypatch):
    assert (run / "curves.png").exists() == HAS_PLOT == (run / "confusion.png").exists()
    monkeypatch.setenv("MXLSTM_FIGURES", "0")
    out = tmp_path / "quiet"
    assert main(["train", "--task", "digits", "--out", str(out), *SMALL]) == 0
    _drop_run_log_handlers()
    assert (out / "report.json").exists() and not list(out.glob("*.png"))


def test_summary_sentences_name_metric_baseline_epoch_and_next_commands(run, capsys):
    report = json.loads((run / "report.json").read_text())
    lines = summary_lines(report, "runs/digits")
    accuracy = report["test"]["accuracy"]
    baseline = report["baseline"]
    assert lines[0].startswith(f"Test accuracy {accuracy:.1%} (majority class "
                               f"{baseline['majority_accuracy']:.1%}, 1-NN Euclidean "
                               f"{baseline['1nn_euclidean_accuracy']:.1%}), best epoch "
                               f"{report['best_epoch']} of 2 (by valid accuracy), ")
    assert lines[1] == "Saved to runs/digits (report.json, metrics.jsonl, checkpoints/best)."
    assert lines[2] == ("Next: mxlstm report runs/digits | mxlstm evaluate --model runs/digits "
                        "| mxlstm export --model runs/digits --out export/digits")


def test_regression_names_rmse_against_the_mean_and_ridge():
    report = {"test": {"mse": 3.14, "rmse": 1.772, "r2": 0.98},
              "baseline": {"mean_predictor": {"rmse": 12.89}, "ridge": {"rmse": 2.018}},
              "best_epoch": 105, "epochs_run": 112, "monitor": "rmse", "seconds": 268}
    assert summary_lines(report, "r")[0].startswith(
        "Test RMSE 1.77 (predicting the mean 12.9, ridge regression 2.02), best epoch 105")


def test_copy_task_compares_like_with_like():
    report = {"test": {"loss": 0.05, "accuracy": 0.93}, "baseline": {"memoryless_nll": 0.17},
              "best_epoch": 3, "epochs_run": 3, "monitor": "accuracy", "seconds": 75}
    first = summary_lines(report, "r")[0]
    assert first.startswith("Test NLL 0.05 nats per step (memoryless guess 0.17 nats per "
                            "step), per-symbol accuracy 93.0% (blanks included)")
    assert first.endswith("1 min 15 s.")


def _page(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


def test_report_page_has_every_section_and_embeds_the_figures(run, capsys):
    assert main(["report", str(run)]) == 0
    answer = json.loads(capsys.readouterr().out)
    page = _page(run)
    for heading in ("Test metrics and baselines", "Timings", "Every epoch",
                    "Confusion matrix", "Configuration"):
        assert f"<h2>{heading}" in page
    assert "model.hidden_size" in page and "majority_accuracy" in page
    assert "<script" not in page and "http" not in page  # self-contained, no code
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    if HAS_PLOT:
        assert len(images) == 2 and len(answer["figures"]) == 2
        assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert images == [] and "Figures need matplotlib" in page


def test_report_works_on_a_run_made_before_this_change(run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for name in ("report.html", "curves.png", "confusion.png", "fingerprints.json"):
        (old / name).unlink(missing_ok=True)
    report = json.loads((old / "report.json").read_text())
    for key in ("epochs_planned", "stopped_early"):
        report.pop(key)
    (old / "report.json").write_text(json.dumps(report))
    assert main(["report", str(old)]) == 0
    assert "best epoch" in _page(old)
    assert (old / "curves.png").exists() == HAS_PLOT


def test_values_from_run_files_are_escaped(run, tmp_path, capsys):
    hostile = tmp_path / "hostile"
    shutil.copytree(run, hostile)
    meta = json.loads((hostile / "meta.json").read_text())
    meta["label_names"][0] = "<script>alert(1)</script>"
    (hostile / "meta.json").write_text(json.dumps(meta))
    assert main(["report", str(hostile)]) == 0
    page = _page(hostile)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_of_a_directory_that_is_no_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mxlstm: error: {tmp_path}: not a run directory (no config.json; make one "
                   f"with mxlstm train --out {tmp_path})")


@pytest.mark.skipif(not HAS_PLOT, reason="matplotlib not installed")
def test_curves_mark_best_epoch_test_score_baseline_and_learning_rate(run, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from mxlstm.training import figures

    labels: list[str] = []
    for name in ("axhline", "axvline"):
        real = getattr(Axes, name)

        def recording(ax, value, real=real, **kw):
            labels.append(kw["label"])
            return real(ax, value, **kw)

        monkeypatch.setattr(Axes, name, recording)
    assert figures.draw_run_figures(run)
    report = json.loads((run / "report.json").read_text())
    assert labels.count(f"best epoch {report['best_epoch']}") == 3  # loss, accuracy, lr
    assert any(label.startswith("test accuracy") for label in labels)
    assert any(label.startswith("majority class") for label in labels)


@pytest.mark.skipif(not (HAS_PLOT and CHROMIUM), reason="needs matplotlib and Debian chromium")
def test_page_renders_in_headless_chromium_with_its_figures(run, tmp_path, capsys):
    assert main(["report", str(run)]) == 0
    dumped = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         "--virtual-time-budget=3000", (run / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert dom.count("data:image/png;base64,") == 2 and "Confusion matrix" in dom
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", f"--user-data-dir={tmp_path / 'p2'}",
                    f"--screenshot={shot}", "--window-size=1200,900",
                    (run / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_ensemble_gives_each_members_epoch_and_where_its_files_are():
    report = {"test": {"accuracy": 0.81}, "baseline": {"majority_accuracy": 0.52},
              "members": [{"seed": s} for s in (0, 1, 2)], "best_epoch": [2, 2, 3],
              "epochs_run": [6, 6, 6], "monitor": "accuracy", "seconds": 300,
              "selection": {"select": "best"}}
    first, saved, _ = summary_lines(report, "r")
    assert first == ("Test accuracy 81.0% (majority class 52.0%), 3 seeds averaged, best "
                     "epochs 2 / 2 / 3 of 6 / 6 / 6 (by valid accuracy), 5 min 0 s.")
    assert saved == ("Saved to r (report.json; each member's metrics.jsonl and checkpoints "
                     "in members/seed-S/).")
    report["selection"] = {"select": "last"}
    assert ", 3 seeds averaged, the final epochs 2 / 2 / 3 kept, " in summary_lines(report, "r")[0]

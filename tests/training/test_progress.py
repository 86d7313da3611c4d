"""Progress display: bars per phase on a terminal, status lines in logs, nothing when quiet."""

from __future__ import annotations

import io
import logging

import pytest

from mxlstm.training.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_two_epochs(progress: Progress) -> None:
    with progress.session(2):
        for epoch in range(2):
            phase = progress.phase(range(4), "train", 4, epoch)
            for _ in phase:
                phase.set(loss="0.5")
            for _ in progress.phase(range(2), "validate", 2, epoch):
                pass
            progress.end_epoch(10.0)
    for _ in progress.phase(range(3), "test", 3):
        pass


def test_bars_on_a_terminal_name_each_phase_with_counts_and_run_eta():
    screen = Terminal()
    run_two_epochs(Progress("auto", stream=screen, redraw_every=0))
    text = screen.getvalue()
    for label in ("epoch 1/2 train", "epoch 1/2 validate", "epoch 2/2 train", "test"):
        assert label in text, label
    assert "4/4" in text and "3/3" in text
    assert "run_eta=" in text  # known once an epoch has finished: 10 s an epoch
    assert "loss=0.5" in text


def test_no_bars_in_a_log_but_a_status_line_without_carriage_returns(caplog):
    stream = io.StringIO()  # not a terminal: auto means no bars
    progress = Progress("auto", stream=stream, status_every=0.0)
    with caplog.at_level(logging.INFO, logger="mxlstm.training.progress"):
        run_two_epochs(progress)
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert "epoch 2/2, train batch 4/4, loss 0.5, run ETA 0 s" in lines
    assert "epoch 1/2, train batch 1/4, loss 0.5" in lines  # no ETA before an epoch ends
    assert all("\r" not in line for line in lines)


def test_quiet_shows_nothing(caplog):
    screen = Terminal()
    with caplog.at_level(logging.INFO, logger="mxlstm.training.progress"):
        run_two_epochs(Progress("on", quiet=True, stream=screen, status_every=0.0))
    assert screen.getvalue() == "" and caplog.records == []


def test_log_lines_go_through_the_bar_not_into_it(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    handler = logging.StreamHandler(screen)  # a console handler, as setup_logging makes
    logger = logging.getLogger("mxlstm.test_progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    progress = Progress("on", stream=screen, redraw_every=0)
    try:
        with progress.session(1):
            for i in progress.phase(range(3), "train", 3, 0):
                if i == 1:
                    logger.info("a log line")
    finally:
        logger.removeHandler(handler)
    pieces = [p for chunk in screen.getvalue().split("\n") for p in chunk.split("\r")]
    assert "a log line" in pieces  # on a line of its own, not glued to a bar
    assert any(p.startswith("epoch 1/1 train:  67%") for p in pieces)  # the bar comes back


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="auto, on, off"):
        Progress("sometimes")

"""What a run shows while it works: one tqdm bar per phase, or a status line in logs.

``mode``:

* ``"on"`` -- a bar per phase (``train``, ``validate``, ``test``) with counts, speed and an
  ETA; the training bar also shows the whole run's ETA (remaining epochs at the mean
  epoch time so far, ``train.max_batches`` counted). Log lines are printed through tqdm
  (``tqdm.contrib.logging``), so they never break a bar.
* ``"off"`` -- no bar; every ``status_every`` seconds one log line
  ``epoch 3/60, batch 12/21, run ETA 4 min 10 s`` (a log file stays readable: no ``\\r``).
* ``"auto"`` (default) -- ``on`` when stderr is a terminal, else ``off``.

``quiet`` shows neither bars nor status lines.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)
MODES = ("auto", "on", "off")


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


class Progress:
    """Progress display of one run (see the module docstring)."""

    def __init__(self, mode: str = "auto", quiet: bool = False, status_every: float = 30.0,
                 stream: Any = None, redraw_every: float = 0.5) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bars = not quiet and (mode == "on" or (mode == "auto" and tty))
        self.status = not quiet and not self.bars
        self.status_every, self.redraw_every = status_every, redraw_every
        self.epochs = 0
        self.epoch_seconds: list[float] = []

    @contextlib.contextmanager
    def session(self, epochs: int) -> Iterator[Progress]:
        """Around the whole fit: log lines go through tqdm while bars are shown."""
        self.epochs = epochs
        if not self.bars:
            yield self
            return
        with logging_redirect_tqdm():
            yield self

    def run_eta(self, epoch: int, done_fraction: float) -> float | None:
        """Seconds left in the run, ``done_fraction`` into (0-based) ``epoch``."""
        if not self.epoch_seconds:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return mean * (self.epochs - epoch - done_fraction)

    def phase(self, iterable: Iterable, name: str, total: int | None,
              epoch: int | None = None) -> ProgressPhase:
        return ProgressPhase(self, iterable, name, total, epoch)

    def end_epoch(self, seconds: float) -> None:
        self.epoch_seconds.append(seconds)


class ProgressPhase:
    """One phase (an epoch's training, a validation or test pass); iterate over it."""

    def __init__(self, progress: Progress, iterable: Iterable, name: str, total: int | None,
                 epoch: int | None) -> None:
        self.progress, self.iterable, self.name = progress, iterable, name
        self.total, self.epoch = total, epoch
        self.count = 0
        self.postfix: dict[str, str] = {}
        self._bar = None
        self._last_status = time.monotonic()
        if progress.bars:
            where = f"epoch {epoch + 1}/{progress.epochs} " if epoch is not None else ""
            self._bar = tqdm(total=total, desc=f"{where}{name}", leave=False, unit="batch",
                             file=progress.stream, mininterval=progress.redraw_every,
                             dynamic_ncols=True)

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.count += 1
                self._show()
        finally:
            self.close()

    def set(self, **values: str) -> None:
        """Values shown after the bar (e.g. ``loss``, ``seq_s``)."""
        self.postfix.update(values)

    def _show(self) -> None:
        done = self.count / self.total if self.total else 0.0
        eta = None if self.epoch is None else self.progress.run_eta(self.epoch, min(done, 1))
        if self._bar is not None:
            shown = dict(self.postfix)
            if eta is not None:
                shown["run_eta"] = _clock(eta)
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)
        elif self.progress.status and \
                time.monotonic() - self._last_status >= self.progress.status_every:
            self._last_status = time.monotonic()
            where = f"epoch {self.epoch + 1}/{self.progress.epochs}, " \
                if self.epoch is not None else ""
            total = f"/{self.total}" if self.total else ""
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            log.info("%s%s batch %d%s%s%s", where, self.name, self.count, total, extra,
                     f", run ETA {_clock(eta)}" if eta is not None else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

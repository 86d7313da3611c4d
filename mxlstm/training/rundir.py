"""The run directory's guarantees: one writer, nothing lost, nothing half-made.

* :class:`RunLock` -- an exclusive ``flock`` on the directory itself, held for the whole
  train / resume; the holder's pid is in ``DIR/.lock``. The kernel drops the lock when the
  process dies, so a killed run never leaves a stale lock.
* :func:`run_status` -- what a directory holds: nothing, a run that never reached its
  first checkpoint (it may be started again), or a run with results.
* :func:`fingerprint_inputs` -- content hashes of every data file a run read and of the
  vocabulary / normalisation fitted on them (``DIR/fingerprints.json``); a resume on
  changed data is refused with the file named.
* :func:`remove_unstarted` -- a run that fails before its first checkpoint takes the files
  it made away again, so the same command can simply be run again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mxlstm.errors import ConfigError, ModelFileError
from mxlstm.training.checkpoint import CHECKPOINTS_DIR, find_checkpoint

LOCK_FILE = ".lock"
FINGERPRINTS = "fingerprints.json"
RESULTS = ("metrics.jsonl", "report.json")  # files that mean epochs were run
MADE_BY_A_RUN = ("config.json", "meta.json", "vocab.json", FINGERPRINTS, "metrics.jsonl",
                 "train.log", "report.json", "curves.png", "confusion.png", LOCK_FILE)


class RunLock:
    """Exclusive lock of run directory ``out`` (which must exist) for this process."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        fd = os.open(self.out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"{self.out}: cannot lock the run directory "
                                  f"({err.strerror})") from None
            raise ConfigError(f"{self.out} is in use by {self._holder()}: one process "
                              f"trains into a run directory at a time") from None
        self._fd = fd
        with contextlib.suppress(OSError):  # the pid is for messages only
            (self.out / LOCK_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        return self

    def _holder(self) -> str:
        try:
            pid = int((self.out / LOCK_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return "another process"
        return f"pid {pid}"

    def release(self, remove_file: bool = True) -> None:
        if self._fd is None:
            return
        if remove_file:
            with contextlib.suppress(OSError):
                (self.out / LOCK_FILE).unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class RunStatus:
    """What run directory ``out`` holds."""

    has_config: bool
    checkpoint: Path | None  # the latest valid checkpoint
    invalid_checkpoints: tuple[str, ...]  # what is wrong with each invalid one
    has_results: bool  # metrics.jsonl with records, or report.json

    @property
    def started(self) -> bool:
        """True once the run has anything worth keeping (a checkpoint or results)."""
        return bool(self.checkpoint or self.invalid_checkpoints or self.has_results)


def run_status(out: Path) -> RunStatus:
    from mxlstm.training.checkpoint import _problem  # what is wrong with a checkpoint

    ckpt_dir = out / CHECKPOINTS_DIR
    latest = find_checkpoint(out, "latest") if ckpt_dir.is_dir() else None
    invalid: list[str] = []
    if latest is None and ckpt_dir.is_dir():
        for entry in sorted(ckpt_dir.iterdir()):
            if entry.is_dir():
                invalid.append(_problem(entry) or f"{entry}: not usable")
    metrics = out / "metrics.jsonl"
    has_records = metrics.is_file() and metrics.stat().st_size > 0
    return RunStatus((out / "config.json").exists(), latest, tuple(invalid),
                     has_records or (out / "report.json").exists())


def refuse_lost_run(out: Path, status: RunStatus) -> None:
    """``--resume`` on a run whose checkpoints are all invalid (or gone) is refused: starting
    over would overwrite its results."""
    if status.checkpoint is not None or not status.started:
        return
    if status.invalid_checkpoints:
        shown = "; ".join(status.invalid_checkpoints[:3])
        more = len(status.invalid_checkpoints) - 3
        raise ModelFileError(f"{out}: no valid checkpoint to resume from ({shown}"
                             f"{f'; {more} more' if more > 0 else ''}); nothing was changed")
    raise ModelFileError(f"{out}: holds results (metrics.jsonl / report.json) but no "
                         f"checkpoint to resume from; nothing was changed")


def remove_unstarted(out: Path, created_dir: bool) -> None:
    """Remove what a run that never reached its first checkpoint wrote into ``out``."""
    if run_status(out).started:
        return
    for name in MADE_BY_A_RUN:
        with contextlib.suppress(OSError):
            (out / name).unlink()
    with contextlib.suppress(OSError):
        shutil.rmtree(out / CHECKPOINTS_DIR)
    if created_dir:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if nothing else is in it


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def fingerprint_inputs(reads: list[tuple[str, str]], meta: dict,
                       files: dict[str, str]) -> dict:
    """The fingerprint of a prepared run: ``reads`` are ``(path, sha256)`` of every data file
    read, ``meta`` / ``files`` what was fitted on them (normalisation, labels, vocabulary)."""
    fitted = {k: v for k, v in meta.items() if k not in ("counts",)}
    return {"files": [{"path": p, "sha256": h} for p, h in reads],
            "meta_sha256": _sha256(json.dumps(fitted, sort_keys=True, default=str)),
            "artefacts_sha256": {name: _sha256(text) for name, text in sorted(files.items())}}


def check_same_inputs(out: Path, current: dict) -> None:
    """Refuse a resume whose data differ from what the run was trained on."""
    path = out / FINGERPRINTS
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved_files = {e["path"]: e["sha256"] for e in saved["files"]}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing, so the data of the run cannot be checked; "
                             f"refusing to resume on data that may differ") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{path}: damaged ({err})") from None
    now = {e["path"]: e["sha256"] for e in current["files"]}
    for name, digest in now.items():
        if name not in saved_files:
            raise ConfigError(f"{name}: the run in {out} was not trained on this file; "
                              f"--resume continues on the run's own data")
        if saved_files[name] != digest:
            raise ConfigError(f"{name}: changed since the run in {out} read it (sha256 "
                              f"{saved_files[name][:12]} -> {digest[:12]}); --resume "
                              f"continues on the same data only: restore the file or start "
                              f"a new run")
    for name in saved_files.keys() - now.keys():
        raise ConfigError(f"{name}: the run in {out} was trained on it, but the resumed run "
                          f"does not read it")
    for name, digest in current["artefacts_sha256"].items():
        if saved.get("artefacts_sha256", {}).get(name) != digest:
            raise ConfigError(f"{out / name}: the {name} fitted on the data differs from the "
                              f"run's; refusing to resume")
    if saved.get("meta_sha256") != current["meta_sha256"]:
        raise ConfigError(f"{out / 'meta.json'}: the normalisation / labels fitted on the "
                          f"data differ from the run's; refusing to resume")

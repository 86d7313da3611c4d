"""kill -9 at random points, including during a checkpoint write: ``--resume`` always finds a
valid checkpoint and ends bit-identical to an uninterrupted run on CPU with the same seed.

A tiny digits run (an epoch is a fraction of a second, two checkpoint writes per epoch) is
started again and again with ``--resume`` and SIGKILLed, each time in one of three ways
chosen by a seeded RNG:

* ``start``: after a random delay from the process start (often before training begins,
  so no checkpoint exists yet, or while the run writes its config / meta files);
* ``train``: after a random delay once the run logs that training starts;
* ``write``: the moment the k-th ``checkpoints/.tmp-*`` directory of the process appears
  (optionally a few milliseconds later), i.e. inside a checkpoint write;
* ``between``: the moment ``checkpoints/latest`` changes for the k-th time, i.e. between
  a checkpoint and the epoch's line in ``metrics.jsonl``.

At the end ``metrics.jsonl`` holds every epoch once, with the reference run's values.

A kill counts as landing inside a checkpoint write when the dead process left a
``.tmp-<tag>-<pid>`` / ``.old-<tag>-<pid>`` directory with its own pid behind.  No
assumption is made about how long anything takes: the delays only shape where kills tend
to land, and every outcome (killed before the first checkpoint, mid-write, after the last
epoch, or finished before the kill) is handled.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from mxlstm.training.checkpoint import find_checkpoint, validate_checkpoint

FLAGS = ["--set", "train.progress=false", "--set", "model.hidden_size=16", "--epochs", "6",
         "--set", "train.max_batches=6", "--set", "model.head_dropout=0.3", "--seed", "0"]
MAX_KILLS = 12
RUN_TIMEOUT = 240.0  # seconds for one process; only hit when something hangs
TRAINING_STARTS = "training on"  # logged (stderr) once the data and model are ready


def _start(out: Path, resume: bool, stderr: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mxlstm.cli", "train", "--task", "digits", "--out", str(out),
           *FLAGS, *(["--resume"] if resume else [])]
    with open(stderr, "wb") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})


def _tmp_dirs(ckpt_dir: Path, pid: int) -> set[str]:
    try:
        return {e.name for e in os.scandir(ckpt_dir)
                if e.name.startswith(".tmp-") and e.name.endswith(f"-{pid}")}
    except FileNotFoundError:
        return set()


def _leftovers(ckpt_dir: Path, pid: int) -> dict[str, list[str]]:
    """Temp / old checkpoint dirs (with their files) that process ``pid`` left behind, i.e.
    it died inside a checkpoint write."""
    if not ckpt_dir.is_dir():
        return {}
    pattern = re.compile(rf"^\.(tmp|old)-.+-{pid}$")
    return {e.name: sorted(f.name for f in e.iterdir())
            for e in sorted(ckpt_dir.iterdir()) if pattern.match(e.name) and e.is_dir()}


def _plan(rng: random.Random, force_write: bool) -> tuple:
    kind = "write" if force_write else rng.choice(["start", "train", "train", "write", "write",
                                                   "between"])
    if kind == "start":
        return kind, rng.uniform(0.2, 5.0)
    if kind == "train":
        return kind, rng.uniform(0.0, 0.7)
    if kind == "between":
        return kind, rng.randint(1, 2)
    # the k-th temp dir this process makes (best + epoch tag per improving epoch), killed
    # at once or a few ms later (later in the write, or just after its renames)
    return kind, rng.randint(1, 3), rng.choice([0.0, rng.uniform(0.001, 0.008)])


def _kill_per_plan(proc: subprocess.Popen, out: Path, stderr: Path, plan: tuple) -> bool:
    """Wait for the moment ``plan`` names, then SIGKILL ``proc``; False if it ended first."""
    started = time.monotonic()
    deadline = started + RUN_TIMEOUT
    ckpt_dir = out / "checkpoints"
    kind = plan[0]
    training_since = None
    seen, appeared = set(), 0
    pointer = ckpt_dir / "latest"

    def stamp():
        try:
            return pointer.stat().st_mtime_ns, pointer.read_bytes()
        except OSError:
            return None

    last_stamp, changes = stamp(), 0
    while proc.poll() is None:
        now = time.monotonic()
        assert now < deadline, f"run {proc.pid} did not end within {RUN_TIMEOUT} s"
        if kind == "start":
            if now - started >= plan[1]:
                break
            time.sleep(0.01)
        elif kind == "between":
            now_stamp = stamp()
            if now_stamp != last_stamp:
                last_stamp, changes = now_stamp, changes + 1
                if changes >= plan[1]:
                    break
            time.sleep(0.0005)
        elif kind == "train":
            if training_since is None and TRAINING_STARTS in stderr.read_text(errors="replace"):
                training_since = now
            if training_since is not None and now - training_since >= plan[1]:
                break
            time.sleep(0.005)
        else:
            current = _tmp_dirs(ckpt_dir, proc.pid)
            appeared += len(current - seen)  # a tag's temp dir reappears for every epoch
            seen = current
            if appeared >= plan[1]:
                if plan[2]:
                    time.sleep(plan[2])
                break
            time.sleep(0.0005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


def _state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())


def test_kill_anywhere_resume_is_valid_and_bit_identical(tmp_path):
    began = time.monotonic()
    reference = tmp_path / "reference"
    # the reference runs alongside the killed runs: it shares nothing with them
    ref_proc = _start(reference, False, tmp_path / "reference.stderr")

    out = tmp_path / "killed"
    ckpt_dir = out / "checkpoints"
    rng = random.Random(20240917)
    kills, in_write, last_epoch, finished = [], 0, None, False
    for attempt in range(MAX_KILLS + 1):
        stderr = tmp_path / f"run-{attempt:02d}.stderr"
        proc = _start(out, attempt > 0, stderr)
        if attempt == MAX_KILLS:  # enough kills: let this one finish
            rc, plan = proc.wait(timeout=RUN_TIMEOUT), ("none",)
        else:
            # until a kill has landed inside a write, kills 5, 6, ... all aim at one
            plan = _plan(rng, force_write=in_write == 0 and len(kills) >= 4)
            _kill_per_plan(proc, out, stderr, plan)
            rc = proc.wait(timeout=RUN_TIMEOUT)
        tail = "\n".join(stderr.read_text(errors="replace").splitlines()[-15:])
        assert rc in (0, -signal.SIGKILL), f"run {attempt} ({plan}) exited {rc}:\n{tail}"
        if rc == 0:
            finished = True
            break

        left = _leftovers(ckpt_dir, proc.pid)
        in_write += bool(left)
        found = find_checkpoint(out, "latest")
        epoch = None if found is None else _state(found)["epoch"]
        kills.append((plan[0], epoch, left))
        print(f"kill {len(kills)}: {plan}, latest -> "
              f"{found.name if found else None} (epoch {epoch}), left behind {left}")
        if found is None:  # killed before the first checkpoint was complete
            assert last_epoch is None, f"kill {len(kills)}: the checkpoint of epoch " \
                                       f"{last_epoch} was lost"
            continue
        assert validate_checkpoint(found), f"kill {len(kills)}: {found} is not valid"
        assert last_epoch is None or epoch >= last_epoch, \
            f"kill {len(kills)}: latest went back from epoch {last_epoch} to {epoch}"
        last_epoch = epoch

    assert finished, "the last run did not finish"
    assert ref_proc.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "reference.stderr").read_text()
    elapsed = time.monotonic() - began
    print(f"{len(kills)} kills, {in_write} inside checkpoint writes, {elapsed:.1f} s")
    assert len(kills) >= 3, f"only {len(kills)} kills: {kills}"
    assert in_write >= 1, f"no kill landed inside a checkpoint write: {kills}"

    ref_ckpt, got_ckpt = find_checkpoint(reference, "latest"), find_checkpoint(out, "latest")
    assert _state(got_ckpt)["epoch"] == _state(ref_ckpt)["epoch"] == 6
    assert (got_ckpt / "model.params").read_bytes() == (ref_ckpt / "model.params").read_bytes()
    assert (find_checkpoint(out, "best") / "model.params").read_bytes() == \
        (find_checkpoint(reference, "best") / "model.params").read_bytes()
    report_ref = json.loads((reference / "report.json").read_text())
    report_got = json.loads((out / "report.json").read_text())
    for key in ("test", "best_epoch", "best_valid", "epochs_run"):
        assert report_got[key] == report_ref[key], key
    timing = {"seconds", "sequences_per_second"}

    def epochs(run: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in timing}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert [r["epoch"] for r in epochs(out)] == [1, 2, 3, 4, 5, 6]
    assert epochs(out) == epochs(reference)

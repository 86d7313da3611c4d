"""Watch `mxlstm train` in a 100x30 tmux pane and check what a person sees.

For each task (digits, text, lm; shortened runs) the pane is captured every 0.2 s. The
script checks that a bar was seen for every phase (train, validate, test), that no line is
wider than the pane or glues a log line onto a bar, and that the run ended with its summary.
It prints the last capture that showed a bar, for docs/quickstart.md.

    .venv/bin/python scripts/progress_in_tmux.py [--tasks digits,text,lm]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 100, 30
RUNS = {"digits": ["--epochs", "2", "--set", "train.eval_batch_size=16"],
        "text": ["--epochs", "1", "--set", "train.max_batches=60"],
        "lm": ["--epochs", "1", "--set", "train.max_batches=40", "--set", "data.max_vocab=2000"]}
ENV = "OMP_NUM_THREADS=1"  # the pane's shell does not inherit this process's environment
BAR = re.compile(r"(epoch \d+/\d+ (train|validate)|test):\s+\d+%\|")


def watch(task: str, mxlstm: str, workdir: Path) -> tuple[set[str], list[str], str]:
    session = f"mxlstm-{task}"
    out = workdir / task
    command = (f"{ENV} {mxlstm} train --task {task} --out {out} {' '.join(RUNS[task])}; "
               f"echo DONE; sleep 60")
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(WIDTH),
                    "-y", str(HEIGHT), command], check=True)
    phases, problems, shown = set(), [], ""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        captured = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True)
        if captured.returncode != 0:
            problems.append(f"the tmux session ended early: {captured.stderr.strip()}")
            break
        screen = captured.stdout
        for line in screen.splitlines():
            found = BAR.search(line)
            if found:
                phases.add(found.group(2) or "test")
                shown = screen
                if re.search(r"\d\d:\d\d:\d\d [IWE] ", line):
                    problems.append(f"log line glued to a bar: {line!r}")
            if len(line) > WIDTH:
                problems.append(f"line wider than {WIDTH}: {line!r}")
        if "DONE" in screen:
            if "Saved to" not in screen:
                problems.append("the run ended without its summary lines")
            break
        time.sleep(0.2)
    else:
        problems.append("the run did not end within 900 s")
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return phases, problems, shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,text,lm")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed", file=sys.stderr)
        return 2
    mxlstm = str(Path(sys.executable).parent / "mxlstm")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            phases, problems, shown = watch(task, mxlstm, Path(tmp))
            missing = {"train", "validate", "test"} - phases
            if missing:
                problems.append(f"no bar seen for {', '.join(sorted(missing))}")
            print(f"== {task}: bars seen for {', '.join(sorted(phases)) or 'nothing'}; "
                  f"{'OK' if not problems else 'PROBLEMS'}")
            for problem in problems:
                print("  " + problem)
            print("\n".join(line.rstrip() for line in shown.splitlines() if line.strip()))
            failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

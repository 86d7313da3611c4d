"""``mxlstm launch``: a local parameter-server job (1 scheduler, servers, workers on
127.0.0.1) trains in sync, and the launcher never leaves a process behind."""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from mxlstm import launch as launch_module
from mxlstm.cli import main
from mxlstm.errors import MxlstmError
from mxlstm.launch import Launcher, worker_command
from mxlstm.training.checkpoint import find_checkpoint

TINY = ["--set", "model.hidden_size=16", "--epochs", "2", "--set", "train.max_batches=5",
        "--set", "train.progress=false"]
PY = sys.executable


@pytest.fixture
def launchers(monkeypatch) -> list[Launcher]:
    """Every Launcher the CLI creates, to check its processes afterwards."""
    made: list[Launcher] = []

    class Recording(Launcher):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(launch_module, "Launcher", Recording)
    return made


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def leftovers(pids: list[int]) -> list[int]:
    """Live processes that are one of ``pids`` or in one of their process groups."""
    groups = set(pids)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] != "Z":
            if int(entry.name) in groups or int(fields[2]) in groups:
                found.append(int(entry.name))
    return found


def processes_of_port(port: int) -> list[int]:
    """Live processes whose environment has ``DMLC_PS_ROOT_PORT=port``."""
    marker = f"DMLC_PS_ROOT_PORT={port}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                if (fields := _stat(int(entry.name))) and fields[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def params(run: Path) -> dict[str, np.ndarray]:
    path = find_checkpoint(run, "latest") / "model.params"
    return {name: value.asnumpy() for name, value in mx.nd.load(str(path)).items()}


def test_two_workers_train_in_sync_and_leave_nothing(tmp_path, capsys, caplog, launchers):
    out = tmp_path / "dist"
    code = main(["launch", "-n", "2", "-s", "1", "--timeout", "150", "--",
                 "mxlstm", "train", "--task", "digits", "--out", str(out), *TINY])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert "adding --set train.kvstore=dist_sync" in caplog.text
    for k in (0, 1):
        assert f"[worker {k}] " in printed.out + printed.err
    first, second = params(out / "worker-0"), params(out / "worker-1")
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    records = [[json.loads(line) for line in (out / f"worker-{k}" / "metrics.jsonl")
                .read_text().splitlines()] for k in (0, 1)]
    assert [len(r) for r in records] == [2, 2]
    mean_train = [np.mean([r[e]["train_loss"] for r in records]) for e in (0, 1)]
    assert mean_train[1] < mean_train[0]
    # labels are ranks: worker-R's own training loss is on the lines labelled [worker R]
    losses = [f"epoch 1: train loss {r[0]['train_loss']:.4f}" for r in records]
    assert losses[0] != losses[1]
    for k in (0, 1):
        mine = [line for line in printed.err.splitlines() if line.startswith(f"[worker {k}] ")]
        assert any(losses[k] in line for line in mine)
        assert not any(losses[1 - k] in line for line in mine)
    # same parameters, same validation set; better than uniform over the 10 digits
    assert records[0][-1]["valid_loss"] == records[1][-1]["valid_loss"] < math.log(10)
    (launcher,) = launchers
    assert len(launcher.pids) == 4
    assert leftovers(launcher.pids) == []


def test_a_failing_worker_stops_the_job(caplog, launchers):
    # rank 1 dies; rank 0 would wait at the barrier for ever
    script = ("import os, mxnet as mx; kv = mx.kv.create('dist_sync'); print('rank', kv.rank)\n"
              "if kv.rank == 1: os._exit(3)\n"
              "kv._barrier()")
    started = time.monotonic()
    assert main(["launch", "-n", "2", "--timeout", "60", "--", PY, "-c", script]) == 3
    assert time.monotonic() - started < 30
    assert "exited with code 3" in caplog.text
    assert leftovers(launchers[0].pids) == []


def test_timeout_kills_workers_that_ignore_sigterm_and_their_children(launchers):
    script = ("import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "subprocess.Popen(['sleep', '60']); time.sleep(60)")
    started = time.monotonic()
    assert main(["launch", "-n", "1", "--timeout", "1", "--", PY, "-c", script]) == 1
    assert time.monotonic() - started < 20
    assert leftovers(launchers[0].pids) == []


def test_sigterm_to_the_launcher_stops_everything():
    worker = [PY, "-c", "import time; time.sleep(60)"]
    proc = subprocess.Popen([PY, "-m", "mxlstm.cli", "launch", "-n", "2", "--", *worker],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        if "scheduler on 127.0.0.1:" in line:
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
            break
    assert port is not None
    deadline = time.monotonic() + 20
    while len(processes_of_port(port)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(processes_of_port(port)) == 4
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert processes_of_port(port) == []


@pytest.mark.parametrize("args,message", [
    ((0, 1, ["mxlstm", "train"]), "number of workers must be >= 1"),
    ((2, 0, ["mxlstm", "train"]), "number of servers must be >= 1"),
    ((2, 1, []), "no worker command"),
    ((2, 1, ["no-such-program-xyz", "--help"]), "command not found: 'no-such-program-xyz'"),
])
def test_bad_arguments(args, message):
    with pytest.raises(MxlstmError, match=message):
        Launcher(*args)


def test_bad_arguments_on_the_command_line(capsys):
    assert main(["launch", "-n", "0", "--", "mxlstm", "train"]) == 2
    assert main(["launch", "-n", "2"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("mxlstm: error: launch:") for e in errors)


@pytest.mark.parametrize("command,added", [
    (["mxlstm", "train", "--task", "digits"], True),
    (["mxlstm", "--debug", "train", "--set", "train.kvstore=local"], True),
    ([PY, "-m", "mxlstm.cli", "train", "--task", "digits"], True),
    (["mxlstm", "train", "--set", "train.kvstore=dist_async"], False),
    (["mxlstm", "train", "--set=train.kvstore=dist_sync"], False),
    (["mxlstm", "evaluate", "--model", "runs/x"], False),
    ([PY, "train.py"], False),
])
def test_worker_command_gets_a_dist_kvstore(command, added):
    expected = [*command, "--set", "train.kvstore=dist_sync"] if added else command
    assert worker_command(command) == expected


def test_dist_kvstore_in_the_config_file_is_kept(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[train]\nkvstore = "dist_async"\n')
    command = ["mxlstm", "train", "--config", str(config)]
    assert worker_command(command) == command


def test_free_port_is_on_localhost():
    port = launch_module.free_port()
    assert 0 < port < 65536


def _children(pid: int) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (f := _stat(int(e.name))) and int(f[1]) == pid]


def test_kill_9_on_the_launcher_stops_the_whole_job():
    # each worker starts a child of its own: the whole tree must go with the launcher
    worker = [PY, "-c", "import subprocess, time; subprocess.Popen(['sleep', '60']); "
                        "time.sleep(60)"]
    proc = subprocess.Popen([PY, "-m", "mxlstm.cli", "launch", "-n", "2", "--", *worker],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        if "scheduler on 127.0.0.1:" in line:
            port = int(line.split("127.0.0.1:")[1].split(",")[0])
            break
    assert port is not None
    deadline = time.monotonic() + 20  # scheduler, server, 2 workers, 2 sleeps
    while len(processes_of_port(port)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(processes_of_port(port)) == 6
    children = _children(proc.pid)  # scheduler, server, workers and the watcher
    assert len(children) == 5
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while (processes_of_port(port) or leftovers(children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of_port(port) == []
    assert leftovers(children) == []


def test_resume_from_different_epochs_stops_every_worker_with_one_line(tmp_path, capfd):
    out = tmp_path / "dist"
    train = ["mxlstm", "train", "--task", "digits", "--out", str(out), *TINY]
    assert main(["launch", "-n", "2", "--timeout", "150", "--", *train, "--epochs", "1"]) == 0
    # one worker's directory loses its checkpoints and results: it would start again from
    # epoch 0 (with its results left, that worker alone refuses to resume)
    shutil.rmtree(out / "worker-1" / "checkpoints")
    for name in ("metrics.jsonl", "report.json"):
        (out / "worker-1" / name).unlink()
    capfd.readouterr()
    started = time.monotonic()
    code = main(["launch", "-n", "2", "--timeout", "150", "--", *train, "--epochs", "1",
                 "--resume", "--extend-epochs", "1"])
    printed = capfd.readouterr()
    assert code == 2, printed.err[-3000:]
    assert time.monotonic() - started < 100
    errors = [line for line in printed.err.splitlines() if "mxlstm: error:" in line]
    expected = ("mxlstm: error: workers resume from different epochs (epochs done by "
                "rank 0: 1, rank 1: 0): resume every worker from the same run directory state")
    assert errors and all(expected in line for line in errors), printed.err[-3000:]
    assert "Traceback" not in printed.err and "timed out" not in printed.err
    # nothing was trained: the directory without checkpoints still has none
    assert not (out / "worker-1" / "checkpoints").exists() or \
        find_checkpoint(out / "worker-1", "latest") is None


def test_labels_are_the_ranks_the_workers_report(capsys):
    # ps-lite gives ranks by its own order; each worker says its rank and prints it
    script = ("import sys, mxnet as mx\nfrom mxlstm.launch import announce_rank\n"
              "kv = mx.kv.create('dist_sync'); announce_rank(kv.rank)\n"
              "print('my rank is', kv.rank, flush=True)\n"
              "print('my rank is', kv.rank, file=sys.stderr, flush=True)")
    assert main(["launch", "-n", "3", "--timeout", "60", "--", PY, "-c", script]) == 0
    printed = capsys.readouterr()
    for text in (printed.out, printed.err):
        lines = [line for line in text.splitlines() if "my rank is" in line]
        assert sorted(lines) == [f"[worker {r}] my rank is {r}" for r in range(3)]
    assert "mxlstm launch: worker rank" not in printed.out + printed.err


def test_a_worker_that_finishes_alone_does_not_hang_the_job(tmp_path, caplog, launchers):
    flag = tmp_path / "first"
    script = (f"import os, time\ntry:\n    os.close(os.open({str(flag)!r}, os.O_CREAT | "
              "os.O_EXCL))\nexcept FileExistsError:\n    time.sleep(60)")
    started = time.monotonic()
    assert main(["launch", "-n", "2", "--finish-grace", "2", "--stall-timeout", "0", "--",
                 PY, "-c", script]) == 1
    assert time.monotonic() - started < 20
    assert "finished 2 s ago but worker #" in caplog.text
    assert leftovers(launchers[0].pids) == []


def test_workers_that_all_wait_are_stopped_and_busy_ones_are_not(caplog, launchers):
    started = time.monotonic()
    assert main(["launch", "-n", "2", "--stall-timeout", "3", "--",
                 PY, "-c", "import time; time.sleep(60)"]) == 1
    assert time.monotonic() - started < 25
    assert "no worker has used any CPU for 3 s" in caplog.text
    assert leftovers(launchers[0].pids) == []
    busy = "import time\nend = time.time() + 5\nwhile time.time() < end:\n    pass"
    assert main(["launch", "-n", "1", "--stall-timeout", "2", "--", PY, "-c", busy]) == 0


def test_a_port_in_use_is_one_line(capsys, launchers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["launch", "--port", str(port), "--", "mxlstm", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mxlstm: error: launch: port {port} on 127.0.0.1 is in use")
    assert len(err.strip().splitlines()) == 1 and launchers == []

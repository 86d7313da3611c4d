"""Run a parameter-server job (``kvstore='dist_sync'``) on this machine.

One scheduler, ``num_servers`` servers and ``num_workers`` workers talk over 127.0.0.1.
The scheduler and the servers are ``python -c "import mxnet"`` with ``DMLC_ROLE`` set
(importing mxnet as a server or scheduler serves until the job ends); every worker runs
the user's command. Each process gets its own process group, so stopping a process stops
whatever it started too. Every process the launcher starts is stopped before it returns,
and also when the launcher itself is killed (``kill -9``): a watcher process, started
first, waits for the launcher's end on a pipe and then kills every process that carries
the job's marker in its environment (``MXLSTM_LAUNCH_JOB``).

Watchdogs, so that no job hangs for ever: a worker that fails stops the job; once one
worker has finished, the others get ``finish_grace`` seconds; when no worker has used any
CPU for ``stall_timeout`` seconds (all waiting for each other), the job is stopped.

An ``mxlstm train`` worker prints :data:`RANK_LINE` with its kvstore rank on stdout and
stderr as soon as it has joined the job; from then on the lines of that stream are
labelled ``[worker <rank>]`` (before that, and for commands that never say,
``[worker #<start order>]``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from mxlstm.errors import MxlstmError
from mxlstm.launch_os import HOST, WATCHER, check_port, cpu_ticks, free_port, signal_group

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
SHUTDOWN_GRACE = 15.0  # seconds the scheduler and servers get to end after the workers
ORPHAN_GRACE = 60.0  # seconds workers may run on once the scheduler or a server has ended
POLL = 0.1
FINISH_GRACE = 60.0  # seconds the other workers get to end once one has finished
STALL_TIMEOUT = 600.0  # seconds without any worker CPU use before the job is stopped
STALL_CHECK = 1.0  # seconds between two looks at the workers' CPU time
JOB_ENV = "MXLSTM_LAUNCH_JOB"  # marks every process of a job (for the watcher)
RANK_LINE = "mxlstm launch: worker rank "  # + rank: a worker says which rank it has

class _Terminated(Exception):
    """SIGTERM arrived while the job was running."""


def announce_rank(rank: int) -> None:
    """Tell the launcher (if this process is one of its workers) this worker's rank, on
    stdout and on stderr: each stream's lines after it are labelled with the rank."""
    if os.environ.get(JOB_ENV):
        for stream in (sys.stdout, sys.stderr):
            print(f"{RANK_LINE}{rank}", file=stream, flush=True)


class _Label:
    """The prefix of the relayed lines of one stream of a process; a worker's changes when
    the stream says its rank (the order of lines within one stream is kept, across the
    two streams it is not)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rank: int | None = None


def _mxlstm_args(command: Sequence[str]) -> list[str] | None:
    """The arguments after the program if ``command`` runs the mxlstm CLI, else None."""
    program = Path(command[0]).name
    if program == "mxlstm":
        return list(command[1:])
    if program.startswith("python") and list(command[1:3]) in (["-m", "mxlstm"],
                                                               ["-m", "mxlstm.cli"]):
        return list(command[3:])
    return None


def _config_kvstore(args: list[str]) -> str | None:
    """``train.kvstore`` as set on the command line or in its ``--config`` TOML file."""
    found = None
    for i, arg in enumerate(args):
        if "train.kvstore=" in arg:
            found = arg.split("train.kvstore=", 1)[1]
        if found is None and (arg == "--config" or arg.startswith("--config=")):
            path = arg.split("=", 1)[1] if "=" in arg else (args[i + 1:i + 2] or [""])[0]
            try:
                with open(path, "rb") as handle:
                    found = tomllib.load(handle).get("train", {}).get("kvstore")
            except (OSError, tomllib.TOMLDecodeError, AttributeError):
                pass  # the worker reports a bad config file itself
    return found


def worker_command(command: Sequence[str]) -> list[str]:
    """The command every worker runs: ``mxlstm train`` gets ``train.kvstore=dist_sync``
    unless it already asks for a ``dist*`` kvstore."""
    command = list(command)
    args = _mxlstm_args(command)
    positional = [a for a in args or [] if not a.startswith("-")]
    if not positional or positional[0] != "train":
        return command
    kvstore = _config_kvstore(args)
    if kvstore is not None and str(kvstore).startswith("dist"):
        return command
    note = f" (instead of train.kvstore={kvstore})" if kvstore is not None else ""
    log.info("worker command: adding --set train.kvstore=dist_sync%s", note)
    return [*command, "--set", "train.kvstore=dist_sync"]


def _resolve(program: str, env: dict[str, str]) -> str:
    """The executable of ``program``; ``mxlstm`` falls back to the one beside Python."""
    found = shutil.which(program, path=env.get("PATH"))
    if found is None and program == "mxlstm":
        sibling = Path(sys.executable).parent / "mxlstm"
        found = str(sibling) if os.access(sibling, os.X_OK) else None
    if found is None:
        raise MxlstmError(f"launch: command not found: {program!r}")
    return found


class Launcher:
    """One local parameter-server job. ``run()`` returns the job's exit code; ``pids``
    lists every process started (scheduler, servers, workers), also after the run."""

    def __init__(self, num_workers: int, num_servers: int, command: Sequence[str],
                 port: int | None = None, env: dict[str, str] | None = None,
                 timeout: float | None = None, finish_grace: float = FINISH_GRACE,
                 stall_timeout: float | None = STALL_TIMEOUT) -> None:
        if not isinstance(num_workers, int) or num_workers < 1:
            raise MxlstmError(f"launch: the number of workers must be >= 1, got {num_workers}")
        if not isinstance(num_servers, int) or num_servers < 1:
            raise MxlstmError(f"launch: the number of servers must be >= 1, got {num_servers}")
        if not command or not str(command[0]).strip():
            raise MxlstmError("launch: no worker command given (put it after '--')")
        if port is not None and not 0 < port < 65536:
            raise MxlstmError(f"launch: port must be in 1..65535, got {port}")
        if timeout is not None and timeout <= 0:
            raise MxlstmError(f"launch: timeout must be > 0 seconds, got {timeout}")
        if finish_grace <= 0:
            raise MxlstmError(f"launch: finish grace must be > 0 seconds, got {finish_grace}")
        if stall_timeout is not None and stall_timeout <= 0:
            raise MxlstmError(f"launch: stall timeout must be > 0 seconds, got {stall_timeout}")
        self.num_workers, self.num_servers, self.timeout = num_workers, num_servers, timeout
        self.finish_grace, self.stall_timeout = finish_grace, stall_timeout
        self.base_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.base_env.pop(JOB_ENV, None)  # a launch inside a launched job is its own job
        command = worker_command([str(c) for c in command])
        self.command = [_resolve(command[0], self.base_env), *command[1:]]
        if port is not None:
            check_port(port)
        self.port = port or free_port()
        self.job = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.pids: list[int] = []
        self.labels: list[tuple[_Label, _Label]] = []  # workers' (stdout, stderr) labels
        self._watcher: subprocess.Popen | None = None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- processes ---------------------------------------------------------------------
    def _env(self, role: str) -> dict[str, str]:
        return {**self.base_env, JOB_ENV: self.job, "DMLC_ROLE": role, "DMLC_PS_ROOT_URI": HOST,
                "DMLC_PS_ROOT_PORT": str(self.port), "DMLC_NODE_HOST": HOST,
                "DMLC_NUM_SERVER": str(self.num_servers),
                "DMLC_NUM_WORKER": str(self.num_workers)}

    def _start_watcher(self) -> None:
        """The process that stops the job if the launcher dies without doing so."""
        try:
            self._watcher = subprocess.Popen([sys.executable, "-c", WATCHER,
                                              f"{JOB_ENV}={self.job}"],
                                             env=self.base_env, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            raise MxlstmError(f"launch: cannot start {sys.executable}: {err.strerror}") \
                from None

    def _end_watcher(self) -> None:
        """Close the watcher's pipe (it then checks that nothing is left) and wait."""
        if self._watcher is None:
            return
        self._watcher.stdin.close()
        try:
            self._watcher.wait(timeout=STOP_GRACE + 5)
        except subprocess.TimeoutExpired:
            self._watcher.kill()
            self._watcher.wait()

    def _start(self, name: str, role: str, command: list[str],
               labels: tuple[_Label, _Label] | None = None) -> subprocess.Popen:
        labels = labels or (_Label(f"[{name}] "), _Label(f"[{name}] "))
        try:
            proc = subprocess.Popen(command, env=self._env(role), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as err:
            raise MxlstmError(f"launch: cannot start {command[0]}: {err.strerror}") from None
        self.pids.append(proc.pid)
        self._procs.append((name, proc))
        for stream, sink, label in ((proc.stdout, "stdout", labels[0]),
                                    (proc.stderr, "stderr", labels[1])):
            reader = threading.Thread(target=self._relay, args=(label, stream, sink),
                                      daemon=True)
            reader.start()
            self._readers.append(reader)
        return proc

    def _relay(self, label: _Label, stream: IO[bytes], sink: str) -> None:
        """Copy ``stream`` line by line to our stdout/stderr with ``label`` (of a line
        redrawn with carriage returns, such as a progress bar, the last state). A worker's
        :data:`RANK_LINE` is not copied: it sets the label to the rank."""
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.startswith(RANK_LINE) and label.rank is None \
                    and text[len(RANK_LINE):].strip().isdigit():
                with self._lock:
                    old, label.rank = label.text, int(text[len(RANK_LINE):])
                    label.text = f"[worker {label.rank}] "
                    if sink == "stderr":
                        log.info("launch: %s has rank %d", old.strip(" []"), label.rank)
                continue
            if "\r" in text:
                parts = [part for part in text.split("\r") if part.strip()]
                if not parts:
                    continue
                text = parts[-1]
            with self._lock:
                out = getattr(sys, sink)
                out.write(label.text + text + "\n")
                out.flush()
        stream.close()

    def _stop(self, procs: list[tuple[str, subprocess.Popen]]) -> None:
        """SIGTERM each process group, wait up to STOP_GRACE seconds, then SIGKILL
        (at once on a second Ctrl-C)."""
        try:
            for _, proc in procs:
                if proc.poll() is None:
                    signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            for name, proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("launch: %s (pid %d) ignored SIGTERM: killed", name, proc.pid)
        except KeyboardInterrupt:
            pass
        # also whatever a process left behind in its group; SIGKILL takes a moment
        hit = [proc.pid for _, proc in procs if signal_group(proc.pid, signal.SIGKILL)]
        for _, proc in procs:
            proc.wait()
        deadline = time.monotonic() + STOP_GRACE
        while hit and time.monotonic() < deadline:
            hit = [pgid for pgid in hit if signal_group(pgid, 0)]
            time.sleep(0.02)

    # -- the job -----------------------------------------------------------------------
    def run(self) -> int:
        """Start the job, wait for the workers, stop everything; the exit code."""
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return self._run()
        except _Terminated:
            log.error("launch: SIGTERM received: stopping the job")
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            log.error("launch: interrupted: stopping the job")
            raise
        finally:
            if previous is not None:  # a second SIGTERM must not cut the clean-up short
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._stop(self._procs)
            for reader in self._readers:
                reader.join(timeout=5)
            self._end_watcher()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _name(self, k: int) -> str:
        """Worker ``k`` (start order) as the log calls it: by rank once that is known."""
        rank = self.labels[k][1].rank if self.labels[k][1].rank is not None \
            else self.labels[k][0].rank
        return f"worker {rank}" if rank is not None else f"worker #{k}"

    def _run(self) -> int:
        log.info("launch: scheduler on %s:%d, %d server(s), %d worker(s): %s", HOST,
                 self.port, self.num_servers, self.num_workers, " ".join(self.command))
        self._start_watcher()
        serve = [sys.executable, "-c", "import mxnet"]
        services = [self._start("scheduler", "scheduler", serve)]
        services += [self._start(f"server {k}", "server", serve)
                     for k in range(self.num_servers)]
        self.labels = [(_Label(f"[worker #{k}] "), _Label(f"[worker #{k}] "))
                       for k in range(self.num_workers)]
        workers = [self._start(f"worker #{k}", "worker", self.command, self.labels[k])
                   for k in range(self.num_workers)]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        services_gone: float | None = None
        first_done: float | None = None
        cpu, busy, looked = -1, time.monotonic(), 0.0
        while True:
            running = [proc for proc in workers if proc.poll() is None]
            for k, proc in enumerate(workers):
                if proc.returncode not in (None, 0):
                    log.error("launch: %s exited with code %d: stopping the job",
                              self._name(k), proc.returncode)
                    return proc.returncode if proc.returncode > 0 else 1
            if not running:
                break
            now = time.monotonic()
            for name, proc in self._procs[:len(services)]:
                if proc.poll() not in (None, 0):
                    log.error("launch: %s exited with code %d while workers were running",
                              name, proc.returncode)
                    return 1
            if services_gone is None and any(p.poll() is not None for p in services):
                services_gone = now  # normal near the end of the job only
            if services_gone is not None and now - services_gone > ORPHAN_GRACE:
                log.error("launch: the scheduler or a server ended; workers still running")
                return 1
            if first_done is None and len(running) < len(workers):
                first_done = now
            if first_done is not None and now - first_done > self.finish_grace:
                done = [self._name(k) for k, p in enumerate(workers) if p.poll() is not None]
                left = [self._name(k) for k, p in enumerate(workers) if p.poll() is None]
                log.error("launch: %s finished %g s ago but %s still running (it waits for "
                          "the others for ever): stopping the job", ", ".join(done),
                          self.finish_grace, ", ".join(left) + (" is" if len(left) == 1
                                                                else " are"))
                return 1
            if self.stall_timeout is not None and now - looked >= STALL_CHECK:
                looked, total = now, sum(cpu_ticks(p.pid) for p in running)
                if total != cpu:
                    cpu, busy = total, now
                elif now - busy > self.stall_timeout:
                    log.error("launch: no worker has used any CPU for %g s (they wait for "
                              "each other, e.g. for an all-reduce that one of them will "
                              "never do): stopping the job", self.stall_timeout)
                    return 1
            if deadline is not None and now > deadline:
                log.error("launch: timed out after %g s: stopping the job", self.timeout)
                return 1
            time.sleep(POLL)
        log.info("launch: all %d workers succeeded", self.num_workers)
        end = time.monotonic() + SHUTDOWN_GRACE
        while any(p.poll() is None for p in services) and time.monotonic() < end:
            time.sleep(POLL)  # they end on their own once the workers have finalised
        return 0


def _raise_terminated(signum: int, frame) -> None:
    raise _Terminated()


def launch(num_workers: int, num_servers: int, command: list[str], port: int | None = None,
           env: dict[str, str] | None = None, timeout: float | None = None,
           finish_grace: float = FINISH_GRACE,
           stall_timeout: float | None = STALL_TIMEOUT) -> int:
    """Run ``command`` as ``num_workers`` workers of a local parameter-server job with
    ``num_servers`` servers; 0 if every worker succeeded, else the first failing worker's
    exit code (1 for a signal, a timeout, a watchdog or a failed scheduler/server)."""
    return Launcher(num_workers, num_servers, command, port=port, env=env, timeout=timeout,
                    finish_grace=finish_grace, stall_timeout=stall_timeout).run()

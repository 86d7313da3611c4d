"""Run a parameter-server job (``kvstore='dist_sync'``) on this machine.

One scheduler, ``num_servers`` servers and ``num_workers`` workers talk over 127.0.0.1.
The scheduler and the servers are ``python -c "import mxnet"`` with ``DMLC_ROLE`` set
(importing mxnet as a server or scheduler serves until the job ends); every worker runs
the user's command. Each process gets its own process group, so stopping a process stops
whatever it started too. Every process the launcher starts is stopped before it returns.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from mxlstm.errors import MxlstmError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
SHUTDOWN_GRACE = 15.0  # seconds the scheduler and servers get to end after the workers
ORPHAN_GRACE = 60.0  # seconds workers may run on once the scheduler or a server has ended
POLL = 0.1


class _Terminated(Exception):
    """SIGTERM arrived while the job was running."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that is free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
                 timeout: float | None = None) -> None:
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
        self.num_workers, self.num_servers, self.timeout = num_workers, num_servers, timeout
        self.base_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        command = worker_command([str(c) for c in command])
        self.command = [_resolve(command[0], self.base_env), *command[1:]]
        self.port = port or free_port()
        self.pids: list[int] = []
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- processes ---------------------------------------------------------------------
    def _env(self, role: str) -> dict[str, str]:
        return {**self.base_env, "DMLC_ROLE": role, "DMLC_PS_ROOT_URI": HOST,
                "DMLC_PS_ROOT_PORT": str(self.port), "DMLC_NODE_HOST": HOST,
                "DMLC_NUM_SERVER": str(self.num_servers),
                "DMLC_NUM_WORKER": str(self.num_workers)}

    def _start(self, name: str, role: str, command: list[str]) -> subprocess.Popen:
        try:
            proc = subprocess.Popen(command, env=self._env(role), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as err:
            raise MxlstmError(f"launch: cannot start {command[0]}: {err.strerror}") from None
        self.pids.append(proc.pid)
        self._procs.append((name, proc))
        for stream, sink in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            reader = threading.Thread(target=self._relay, args=(f"[{name}] ", stream, sink),
                                      daemon=True)
            reader.start()
            self._readers.append(reader)
        return proc

    def _relay(self, prefix: str, stream: IO[bytes], sink: str) -> None:
        """Copy ``stream`` line by line to our stdout/stderr with ``prefix`` (of a line
        redrawn with carriage returns, such as a progress bar, the last state)."""
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if "\r" in text:
                parts = [part for part in text.split("\r") if part.strip()]
                if not parts:
                    continue
                text = parts[-1]
            with self._lock:
                out = getattr(sys, sink)
                out.write(prefix + text + "\n")
                out.flush()
        stream.close()

    def _stop(self, procs: list[tuple[str, subprocess.Popen]]) -> None:
        """SIGTERM each process group, wait up to STOP_GRACE seconds, then SIGKILL
        (at once on a second Ctrl-C)."""
        try:
            for _, proc in procs:
                if proc.poll() is None:
                    _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            for name, proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("launch: %s (pid %d) ignored SIGTERM: killed", name, proc.pid)
        except KeyboardInterrupt:
            pass
        # also whatever a process left behind in its group; SIGKILL takes a moment
        hit = [proc.pid for _, proc in procs if _signal_group(proc.pid, signal.SIGKILL)]
        for _, proc in procs:
            proc.wait()
        deadline = time.monotonic() + STOP_GRACE
        while hit and time.monotonic() < deadline:
            hit = [pgid for pgid in hit if _signal_group(pgid, 0)]
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
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _run(self) -> int:
        log.info("launch: scheduler on %s:%d, %d server(s), %d worker(s): %s", HOST,
                 self.port, self.num_servers, self.num_workers, " ".join(self.command))
        serve = [sys.executable, "-c", "import mxnet"]
        services = [self._start("scheduler", "scheduler", serve)]
        services += [self._start(f"server {k}", "server", serve)
                     for k in range(self.num_servers)]
        workers = [self._start(f"worker {k}", "worker", self.command)
                   for k in range(self.num_workers)]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        services_gone: float | None = None
        while True:
            running = [proc for proc in workers if proc.poll() is None]
            for k, proc in enumerate(workers):
                if proc.returncode not in (None, 0):
                    log.error("launch: worker %d exited with code %d: stopping the job",
                              k, proc.returncode)
                    return proc.returncode if proc.returncode > 0 else 1
            if not running:
                break
            for name, proc in self._procs[:len(services)]:
                if proc.poll() not in (None, 0):
                    log.error("launch: %s exited with code %d while workers were running",
                              name, proc.returncode)
                    return 1
            if services_gone is None and any(p.poll() is not None for p in services):
                services_gone = time.monotonic()  # normal near the end of the job only
            if services_gone is not None and time.monotonic() - services_gone > ORPHAN_GRACE:
                log.error("launch: the scheduler or a server ended; workers still running")
                return 1
            if deadline is not None and time.monotonic() > deadline:
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


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if the group has no process left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def launch(num_workers: int, num_servers: int, command: list[str], port: int | None = None,
           env: dict[str, str] | None = None, timeout: float | None = None) -> int:
    """Run ``command`` as ``num_workers`` workers of a local parameter-server job with
    ``num_servers`` servers; 0 if every worker succeeded, else the first failing worker's
    exit code (1 for a signal, a timeout or a failed scheduler/server)."""
    return Launcher(num_workers, num_servers, command, port=port, env=env,
                    timeout=timeout).run()

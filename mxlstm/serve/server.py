"""Multi Model Server for mxlstm archives, bound to 127.0.0.1, with every process it starts
stopped with it.

:class:`Server` writes a config into its run directory (model store, logs, temp dir,
``config.properties``), starts ``python -m mms.model_server --foreground`` in a new
session, waits (bounded) until ``/ping`` is healthy, then registers each archive through
the management API with its workers and batching. Every process of the server (the
launcher, the Java frontend, the Python workers) carries a marker in its environment; a
watcher process (:data:`mxlstm.launch_os.WATCHER`) holds a pipe from this process and
kills every marked process once this process ends in any way, so nothing outlives it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from mxlstm.launch_os import HOST, WATCHER, signal_group
from mxlstm.serve.archive import read_archive
from mxlstm.serve.handler import BACKEND_ENV, QUIET_ENV
from mxlstm.serve.http import Client
from mxlstm.serve.mms_config import LOG_CONFIG, log_config_text, mms_settings, properties_text
from mxlstm.serve.needs import ServeError, need_server

MARKER_ENV = "MXLSTM_SERVE_JOB"
STATE_FILE = "server.json"
BACKENDS = ("mxnet", "onnxruntime")
MAX_PORT = 32766  # MMS 1.1.11 refuses ports >= 32767 ("Invalid port number")


def default_run_dir() -> Path:
    """Where ``mxlstm serve`` keeps its config, model store and logs by default (and where
    ``mxlstm serve --stop`` looks)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"mxlstm-serve-{os.getuid()}"


@dataclass
class ServeOptions:
    """How to serve: ``port`` 0 picks a free one (``management_port`` None: another free
    one, or ``port + 1``); ``workers`` per model; ``batch_size`` requests a forward pass,
    waiting at most ``max_batch_delay`` ms for them; ``backend`` None: the archive's;
    ``quiet_logs``: :func:`~mxlstm.serve.mms_config.log_config_text` instead of MMS's
    per-request logging; ``netty_threads`` None: MMS's default."""

    port: int = 8080
    management_port: int | None = None
    workers: int = 1
    batch_size: int = 1
    max_batch_delay: int = 10
    backend: str | None = None
    quiet_logs: bool = True
    netty_threads: int | None = None
    max_request_mb: float = 8.0
    timeout: float = 180.0
    run_dir: Path = field(default_factory=default_run_dir)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(avoid: tuple[int, ...] = ()) -> int:
    """A free port on 127.0.0.1 below :data:`MAX_PORT` (the kernel's ephemeral ports, which
    binding to port 0 gives, lie above it)."""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, MAX_PORT)
        if port not in avoid and _port_free(port):
            return port
    raise ServeError(f"no free port found on {HOST} between 20000 and {MAX_PORT}")


def _last_log_line(run_dir: Path) -> str:
    """The last ERROR-ish line MMS wrote, for a one-line failure message."""
    lines: list[str] = []
    for log in [run_dir / "mms.out", *sorted((run_dir / "logs").glob("*.log"))]:
        try:
            lines += log.read_text(errors="replace").splitlines()[-400:]
        except OSError:
            continue
    picked = [x for x in lines if "Error" in x or "ERROR" in x or "Exception" in x]
    return " ".join((picked or lines or ["(no log)"])[-1].split())[:300]


class Server:
    """Multi Model Server serving ``archives`` (``.mar`` paths) on 127.0.0.1.

    >>> with Server(["export/digits.mar"], ServeOptions(port=0)) as s:  # doctest: +SKIP
    ...     s.url   # 'http://127.0.0.1:PORT' ; POST s.url + '/predictions/digits'
    """

    def __init__(self, archives: list[str | Path], options: ServeOptions) -> None:
        need_server()  # the extra and Java first: their absence is the likelier problem
        self.options = options
        if options.backend is not None and options.backend not in BACKENDS:
            raise ServeError(f"--backend must be one of {', '.join(BACKENDS)}")
        self.archives = [Path(a) for a in archives]
        self.infos = [read_archive(a) for a in self.archives]
        names = [i["name"] for i in self.infos]
        if len(set(names)) != len(names):
            raise ServeError(f"two archives serve the same model name ({names})")
        for path, info in zip(self.archives, self.infos):
            backend = options.backend or info["settings"].get("backend", "mxnet")
            if backend != "mxnet" and not (info["meta"].get("onnx") or {}).get("exported"):
                raise ServeError(f"{path}: backend {backend} needs an ONNX graph in the "
                                 f"archive (mxlstm export ... --onnx --mar)")
        self.run_dir = Path(options.run_dir)
        self.marker = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.port = self.management_port = 0
        self._proc: subprocess.Popen | None = None
        self._watcher: subprocess.Popen | None = None

    # -- urls -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.management_port}"

    @property
    def models(self) -> list[str]:
        return [i["name"] for i in self.infos]

    # -- start ----------------------------------------------------------------------------
    def _ports(self) -> None:
        o = self.options
        self.port = o.port or free_port()
        self.management_port = o.management_port or (free_port((self.port,)) if not o.port
                                                      else o.port + 1)
        for flag, port in (("--port", self.port), ("--management-port", self.management_port)):
            if not 1 <= port <= MAX_PORT:
                raise ServeError(f"{flag} {port}: Multi Model Server takes ports 1 to "
                                 f"{MAX_PORT} (0: a free one)")
            if not _port_free(port):
                raise ServeError(f"{flag} {port}: port {port} on {HOST} is in use (another "
                                 f"server? mxlstm serve --stop; or choose another port, "
                                 f"0 for a free one)")

    def _write_config(self) -> Path:
        store = self.run_dir / "store"
        for path in (store, self.run_dir / "tmp", self.run_dir / "logs"):
            path.mkdir(parents=True, exist_ok=True)
        for old in store.glob("*.mar"):
            old.unlink()
        for archive, info in zip(self.archives, self.infos):
            shutil.copyfile(archive, store / f"{info['name']}.mar")
        settings = mms_settings(
            url=self.url, management_url=self.management_url, store=store,
            workers=self.options.workers,
            max_request_bytes=int(self.options.max_request_mb * 2 ** 20),
            netty_threads=self.options.netty_threads)
        config = self.run_dir / "config.properties"
        config.write_text(properties_text(settings))
        if self.options.quiet_logs:
            (self.run_dir / LOG_CONFIG).write_text(log_config_text(self.run_dir / "logs"))
        return config

    def _env(self) -> dict[str, str]:
        env = {**os.environ, MARKER_ENV: self.marker, "TEMP": str(self.run_dir / "tmp"),
               "TMPDIR": str(self.run_dir / "tmp")}
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
        env[QUIET_ENV] = "1" if self.options.quiet_logs else "0"
        if self.options.backend:
            env[BACKEND_ENV] = self.options.backend
        else:
            env.pop(BACKEND_ENV, None)
        return env

    def start(self) -> Server:
        """Start MMS, wait for ``/ping``, register the archives; ServeError (with
        everything stopped) when it does not come up within ``options.timeout``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._ports()
        config = self._write_config()
        env = self._env()
        self._watcher = subprocess.Popen([sys.executable, "-c", WATCHER,
                                          f"{MARKER_ENV}={self.marker}"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         start_new_session=True)
        command = [sys.executable, "-m", "mms.model_server", "--start", "--foreground",
                   "--mms-config", str(config), "--model-store", str(self.run_dir / "store")]
        if self.options.quiet_logs:
            command += ["--log-config", str(self.run_dir / LOG_CONFIG)]
        try:
            with open(self.run_dir / "mms.out", "wb") as out:
                self._proc = subprocess.Popen(command, cwd=self.run_dir, env=env, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL,
                                              start_new_session=True)
            deadline = time.monotonic() + self.options.timeout
            self._wait_healthy(deadline)
            for info in self.infos:
                self._register(info["name"], deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, deadline: float) -> None:
        client = Client(self.url, timeout=2.0)
        while True:
            if self._proc.poll() is not None:
                raise ServeError(f"Multi Model Server exited with status "
                                 f"{self._proc.returncode} before it was healthy: "
                                 f"{_last_log_line(self.run_dir)}")
            try:
                status, body = client.json("GET", "/ping")
                if status == 200 and isinstance(body, dict) and body.get("status") == "Healthy":
                    return
            except OSError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise ServeError(f"Multi Model Server was not healthy within "
                                 f"{self.options.timeout:g} s (--timeout): "
                                 f"{_last_log_line(self.run_dir)}")
            time.sleep(0.25)

    def _register(self, name: str, deadline: float) -> None:
        o = self.options
        query = urlencode({"url": f"{name}.mar", "model_name": name,
                           "initial_workers": o.workers, "batch_size": o.batch_size,
                           "max_batch_delay": o.max_batch_delay, "synchronous": "true"})
        client = Client(self.management_url, timeout=max(5.0, deadline - time.monotonic()))
        try:
            status, body = client.json("POST", f"/models?{query}")
        except OSError as err:
            raise ServeError(f"registering {name} failed ({err}): "
                             f"{_last_log_line(self.run_dir)}") from None
        finally:
            client.close()
        if status != 200:
            message = body.get("message") if isinstance(body, dict) else body
            raise ServeError(f"registering {name} failed (HTTP {status}: {message}): "
                             f"{_last_log_line(self.run_dir)}")

    # -- running and stopping -------------------------------------------------------------
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``grace`` s, then
        the watcher sweeps any marked process left (MMS workers are not in the group
        once the frontend has gone)."""
        if self._proc is not None:
            signal_group(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            deadline = time.monotonic() + grace
            while signal_group(self._proc.pid, 0) and time.monotonic() < deadline:
                time.sleep(0.05)
            signal_group(self._proc.pid, signal.SIGKILL)
            self._proc = None
        if self._watcher is not None:
            self._watcher.stdin.close()
            try:
                self._watcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._watcher.kill()
                self._watcher.wait()
            self._watcher = None

    def state(self) -> dict:
        """What ``server.json`` records (for ``mxlstm serve --stop`` and scripts)."""
        return {"pid": os.getpid(), "marker": self.marker, "url": self.url,
                "management_url": self.management_url, "run_dir": str(self.run_dir),
                "models": {n: f"{self.url}/predictions/{n}" for n in self.models},
                "workers": self.options.workers, "batch_size": self.options.batch_size,
                "max_batch_delay": self.options.max_batch_delay,
                "backend": self.options.backend}

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def write_state(server: Server, **extra) -> dict:
    """Write ``RUN_DIR/server.json``: :meth:`Server.state` and ``extra`` (temp name, then
    rename); returns what was written."""
    path = server.run_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    record = {**server.state(), **extra}
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return record

"""``mxlstm serve``: run :class:`~mxlstm.serve.server.Server` in the foreground until Ctrl-C,
SIGTERM or ``mxlstm serve --stop``; ``RUN_DIR/server.json`` says which one runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mxlstm.launch_os import WATCHER
from mxlstm.serve.needs import ServeError
from mxlstm.serve.server import MARKER_ENV, STATE_FILE, ServeOptions, Server, write_state

EXAMPLES = ["mxlstm export --model runs/digits --out export/digits --mar",
            "mxlstm serve --model export/digits.mar --port 8080   # Ctrl-C stops it",
            "mxlstm serve --stop"]


class _Stopped(Exception):
    """SIGTERM arrived: stop the server as Ctrl-C does."""


def _start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _recorded(run_dir: Path) -> dict | None:
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def _running(state: dict | None) -> bool:
    return bool(state) and _start_ticks(state["pid"]) == state.get("start_ticks")


def stop_server(run_dir: Path, timeout: float = 30.0) -> dict:
    """Stop the server recorded in ``run_dir`` (SIGTERM to its ``mxlstm serve``, then
    every process left with its marker); returns what was recorded."""
    state = _recorded(run_dir)
    if state is None:
        raise ServeError(f"no server recorded in {run_dir / STATE_FILE} (nothing to stop; "
                         f"give the --run-dir it was started with)")
    if _running(state):
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _running(state) and time.monotonic() < deadline:
            time.sleep(0.1)
    if isinstance(state.get("marker"), str):  # whatever is left, e.g. after a SIGKILL
        subprocess.run([sys.executable, "-c", WATCHER, f"{MARKER_ENV}={state['marker']}"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return state


def _raise_stopped(signum, frame) -> None:
    raise _Stopped()


def serve(archives: list[str], options: ServeOptions, out=sys.stdout) -> int:
    """Serve ``archives`` until interrupted; prints one JSON line (urls, models) on
    ``out`` once every model answers, and notes on stderr."""
    run_dir = Path(options.run_dir)
    state = _recorded(run_dir)
    if _running(state):
        raise ServeError(f"a server already runs from {run_dir} ({state.get('url')}, pid "
                         f"{state['pid']}): mxlstm serve --stop"
                         + ("" if run_dir == ServeOptions().run_dir else f" --run-dir {run_dir}"))
    server = Server(archives, options)
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    started = False
    try:
        server.start()
        started = True
        record = write_state(server, start_ticks=_start_ticks(os.getpid()))
        print(json.dumps({k: record[k] for k in ("url", "management_url", "models",
                                                 "run_dir", "pid")}), file=out, flush=True)
        for name, url in record["models"].items():
            print(f"mxlstm: serving {name} at {url} (127.0.0.1 only, no authentication; "
                  f"Ctrl-C stops)", file=sys.stderr, flush=True)
        while server.alive():
            time.sleep(0.5)
        raise ServeError(f"the server stopped unexpectedly (logs in {run_dir / 'logs'})")
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop()
        if (_recorded(run_dir) or {}).get("pid") == os.getpid():
            (run_dir / STATE_FILE).unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
        if started:
            print("mxlstm: server stopped", file=sys.stderr, flush=True)


def add_serve_options(p, positive_int) -> None:
    """The options of ``mxlstm serve`` on parser ``p`` (``positive_int``: the CLI's type
    of whole numbers >= 1)."""
    import argparse

    p.epilog = "examples:\n" + "\n".join("  " + x for x in EXAMPLES)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--model", nargs="+", metavar="PREFIX.mar",
                   help="archives of mxlstm export --mar; each served at "
                        "/predictions/NAME")
    p.add_argument("--port", type=int, default=8080,
                   help="inference port on 127.0.0.1 (default 8080; 0: a free one)")
    p.add_argument("--management-port", type=int, metavar="PORT",
                   help="management port on 127.0.0.1 (default PORT+1; free with --port 0)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="W",
                   help="worker processes per model, each with its own predictor (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="B",
                   help="server-side batching: up to B requests a forward pass (default 1)")
    p.add_argument("--max-batch-delay", type=positive_int, metavar="MS",
                   help="with --batch-size: wait at most MS ms to fill a batch (default 10)")
    p.add_argument("--backend", choices=("mxnet", "onnxruntime"),
                   help="graph runner of the workers (default: the archive's, mxnet; "
                        "onnxruntime needs an export with --onnx)")
    p.add_argument("--max-request-mb", type=float, default=8.0, metavar="MB",
                   help="the server refuses larger request bodies (HTTP 413; default 8)")
    p.add_argument("--timeout", type=float, default=180.0, metavar="SEC",
                   help="give up when the server is not healthy within SEC s (default 180)")
    p.add_argument("--run-dir", metavar="DIR",
                   help="config, model store and logs (default $TMPDIR/mxlstm-serve-UID)")
    p.add_argument("--stop", action="store_true",
                   help="stop the server started from --run-dir and every process it started")
    p.set_defaults(func=serve_command)


def serve_command(args) -> int:
    """The CLI's ``serve`` (see :func:`mxlstm.cli.make_parser`)."""
    run_dir = Path(args.run_dir) if args.run_dir else ServeOptions().run_dir
    if args.stop:
        state = stop_server(run_dir)
        print(f"mxlstm: stopped the server at {state.get('url')} (pid {state['pid']})",
              file=sys.stderr)
        return 0
    if not args.model:
        raise ServeError("give --model PREFIX.mar (mxlstm export ... --mar), or --stop")
    if args.max_batch_delay is not None and args.batch_size == 1:
        raise ServeError("--max-batch-delay is the wait for a batch: give it with "
                         "--batch-size B > 1")
    options = ServeOptions(port=args.port, management_port=args.management_port,
                           workers=args.workers, batch_size=args.batch_size,
                           max_batch_delay=args.max_batch_delay or 10,
                           backend=args.backend, timeout=args.timeout, run_dir=run_dir,
                           max_request_mb=args.max_request_mb)
    return serve(args.model, options)

"""What the launcher (:mod:`mxlstm.launch`) asks of the operating system: free and usable
ports, the watcher script that outlives a killed launcher, CPU time of a process, signals
to a process group."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from mxlstm.errors import MxlstmError

HOST = "127.0.0.1"


# The watcher: reads its stdin (a pipe from the launcher) until EOF, i.e. until the
# launcher has ended in any way, then kills every process whose environment has the
# job's marker (SIGTERM, up to 1 s, SIGKILL), with its process group.
WATCHER = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
marker = sys.argv[1].encode()
while sys.stdin.buffer.read(4096):
    pass
def marked():
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/" + name + "/environ", "rb") as handle:
                    if marker in handle.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found
def hit(pids, sig):
    own = os.getpgid(0)
    for pid in pids:
        for kill, target in ((os.killpg, None), (os.kill, pid)):
            try:
                if target is None:
                    target = os.getpgid(pid)
                    if target == own:
                        continue
                kill(target, sig)
            except OSError:
                pass
pids, deadline = marked(), time.monotonic() + 1.0
hit(pids, signal.SIGTERM)
while pids and time.monotonic() < deadline:
    time.sleep(0.05)
    pids = marked()
for _ in range(100):
    if not pids:
        break
    hit(pids, signal.SIGKILL)
    time.sleep(0.05)
    pids = marked()
"""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that is free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port(port: int, host: str = HOST) -> None:
    """MxlstmError if ``port`` on ``host`` cannot be listened on (another socket has it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as err:
            reason = "is in use" if err.errno == errno.EADDRINUSE else \
                f"cannot be used ({err.strerror})"
            raise MxlstmError(f"launch: port {port} on {host} {reason}: choose another "
                              f"--port, or leave it out to get a free one") from None


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of process ``pid`` in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if the group has no process left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True

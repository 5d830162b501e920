"""Processes we started, watched and stopped by pid (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while `pid` runs; reaps it if it is our zombie child (daemons we forked)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM `pid`, wait up to `timeout` for it to exit, then SIGKILL and wait.

    Waits on the process itself, not its pid file: daemons remove theirs first.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.02)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while process_alive(pid):
            time.sleep(0.02)

"""Start, find and stop the embedded stack as a background process.

The stack's pid lives in `<run_dir>/stack.pid` and its log in `stack.log`; it is
stopped by that pid only. Readiness means the API answers and this host's agent
is listed alive, so a caller can bind ports the moment `start` returns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from vifwire.procs import terminate
from vifwire.settings import STACK_READY_FILE, Settings


class StackError(Exception):
    """The embedded stack could not be started, reached or stopped."""


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "stack.pid"


def log_file(settings: Settings) -> Path:
    return settings.run_dir / "stack.log"


def _ready_pid(settings: Settings) -> int | None:
    """The pid in the file the embedded stack writes once it serves."""
    try:
        return int((settings.run_dir / STACK_READY_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def stack_pid(settings: Settings) -> int | None:
    try:
        pid = int(pid_file(settings).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        if b"vifwire" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    return pid


def agents(settings: Settings, timeout: float = 2.0,
           **filters: str) -> list[dict[str, Any]] | None:
    """The server's agents list; None when the API does not answer."""
    try:
        response = httpx.get(f"{settings.api_url}/v2.0/agents", params=filters, timeout=timeout)
        listed = response.json().get("agents") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return listed if isinstance(listed, list) else None


def agent_alive(settings: Settings, timeout: float = 2.0) -> bool:
    """True when the API answers and lists this host's agent alive."""
    listed = agents(settings, timeout, host=settings.host) or []
    return any(agent.get("alive") for agent in listed)


def stack_args(settings: Settings) -> list[str]:
    args = ["--run-dir", str(settings.run_dir), "--host", settings.host,
            "--api-port", str(settings.api_port), "--nova-url", settings.nova_url,
            "--bus-url", settings.bus_url, "--bus-prefix", settings.bus_prefix,
            "--api-host", settings.api_host]
    if settings.database_url:
        args += ["--database-url", settings.database_url]
    if settings.state_dir is not None:
        args += ["--state-dir", str(settings.state_dir)]
    if settings.trace_dir is not None:
        args += ["--trace-dir", str(settings.trace_dir)]
    if settings.ovs_netns:
        args += ["--ovs-netns", settings.ovs_netns]
    if settings.cprofile_dir is not None:
        args += ["--cprofile-dir", str(settings.cprofile_dir)]
    return args


def start(settings: Settings, wait_s: float = 60.0) -> int:
    """Spawn `vifwire stack` in the background and wait until it is ready."""
    existing = stack_pid(settings)
    if existing is not None:
        return existing
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with log_file(settings).open("ab") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "vifwire.cli.main", *stack_args(settings), "stack"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    pid_file(settings).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(settings).unlink(missing_ok=True)
            raise StackError(f"the stack exited with code {process.returncode}: "
                             f"{_tail(log_file(settings))}")
        if agent_alive(settings, timeout=0.5) or (
                settings.auth_strategy != "noauth" and _ready_pid(settings) == process.pid):
            # Behind Keystone the agents list wants a token: the stack's word instead.
            return process.pid
        time.sleep(0.1)
    stop(settings)
    raise StackError(f"the stack did not become ready in {wait_s:.0f}s: "
                     f"{_tail(log_file(settings))}")


def stop(settings: Settings, wait_s: float = 20.0) -> bool:
    """SIGTERM the stack by its pid file; True if one was running."""
    pid = stack_pid(settings)
    if pid is None:
        pid_file(settings).unlink(missing_ok=True)
        return False
    terminate(pid, wait_s)
    pid_file(settings).unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 5) -> str:
    """The stack's own last "error:" line if it printed one, else the log's last lines."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    errors = [line.split("error:", 1)[1].strip() for line in text if "error:" in line]
    if errors:
        return errors[-1]
    return " | ".join(text[-lines:]) or f"(empty log {path})"

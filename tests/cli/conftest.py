"""Fixtures for the CLI's process tests: real databases, free ports, processes by pid.

Every database is a throwaway one named with this run's pid and a random id, so
helpers running the suite at once never share one; every process a test starts
is stopped by its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]
PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIFWIRE_")}
    return {**env, "VIFWIRE_RUN_DIR": str(run_dir), "COLUMNS": "200", **extra}


def run_cli(*args: str, run_dir: Path, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIFWIRE, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(run_dir, **env), check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


def _throwaway(admin_url: str, create: str, drop: str) -> Iterator[str]:
    name = f"vwcli_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(create.format(name=name)))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop.format(name=name)))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _throwaway(PG_ADMIN_URL, 'CREATE DATABASE "{name}"',
                          'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    yield from _throwaway(MARIADB_ADMIN_URL, "CREATE DATABASE `{name}`",
                          "DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'vifwire.sqlite'}"
    fixture = "pg_url" if request.param == "postgresql" else "mariadb_url"
    url: str = request.getfixturevalue(fixture)
    return url


class Process:
    """A vifwire process this test started; its output goes to a log file."""

    def __init__(self, args: list[str], run_dir: Path, log: Path, **env: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen([*VIFWIRE, *args], stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=cli_env(run_dir, **env))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = 60) -> None:
        """Wait until `done()` (a condition on the world), failing fast if we exited."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.popen.poll() is not None:
                pytest.fail(f"exited {self.popen.returncode} waiting for {what}: "
                            f"{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}: {self.output()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

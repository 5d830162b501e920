"""RabbitMQ for the bus tests: a vhost of our own on the shared broker (deleted
after the session), and on demand a private broker node that a test may kill."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = "127.0.0.1:5672"


def _ctl(*args: str, node: str | None = None, timeout: float = 60) -> None:
    cmd = ["rabbitmqctl", "-q"] + (["-n", node] if node else []) + list(args)
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A vhost of this session's own on the shared broker."""
    vhost = f"vw-{uuid.uuid4().hex[:10]}"
    try:
        _ctl("add_vhost", vhost)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"the shared RabbitMQ at {SHARED} is not usable: {exc}")
    _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@{SHARED}/{vhost}"
    _ctl("delete_vhost", vhost)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateBroker:
    """One rabbitmq-server node of our own, with its own name, ports and files."""

    def __init__(self, base: Path) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.node = f"vwtest-{self.id}@localhost"
        self.port = free_port()
        self.base = base
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "plugins").write_text("[].\n")
        self.env = {**os.environ,
                    "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(free_port()),
                    "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(base / "log"),
                    "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
                    "RABBITMQ_FEATURE_FLAGS_FILE": str(base / "feature_flags"),
                    "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "plugins"),
                    "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
                    "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config")}
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        # rabbitmq-server drops root for the rabbitmq user: its files must be that user's.
        for path in [base, *base.rglob("*")]:
            with contextlib.suppress(LookupError, OSError):
                shutil.chown(path, "rabbitmq", "rabbitmq")

    def start(self) -> None:
        with open(self.base / "server.out", "ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = (self.base / "server.out").read_text()[-2000:]
                raise RuntimeError(f"private RabbitMQ exited: {out}")
            if self._speaks_amqp() and (self.base / "rabbit.pid").exists():
                return
            time.sleep(0.2)
        raise RuntimeError("private RabbitMQ did not start within 120 s")

    def _speaks_amqp(self) -> bool:
        """True once the node answers the AMQP protocol header with Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(1) == b"\x01"
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole node (its process group: beam, epmd it spawned, shells)."""
        # The wrapper switches to the rabbitmq user through su, which puts the node
        # in a session of its own: find it by the pid file the node wrote.
        pid_file = self.base / "rabbit.pid"
        with contextlib.suppress(OSError, ValueError):
            beam = int(pid_file.read_text().strip())
            os.killpg(os.getpgid(beam), signal.SIGKILL)
            while _alive(beam):
                time.sleep(0.05)
        pid_file.unlink(missing_ok=True)
        if self.process is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    if shutil.which("rabbitmq-server") is None:
        pytest.fail("rabbitmq-server is not installed")
    base = Path(tempfile.mkdtemp(prefix="vw-rabbit-"))
    broker = PrivateBroker(base)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
        shutil.rmtree(base, ignore_errors=True)

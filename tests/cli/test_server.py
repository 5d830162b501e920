"""`vifwire server` and `vifwire db upgrade` as an operator runs them: real
processes on real SQLite, PostgreSQL and MariaDB, workers killed for real."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import httpx
import pytest

from .conftest import Process, answers, error_lines, free_port, run_cli


def _server(tmp_path: Path, processes: list[Process], database_url: str, *args: str,
            port: int | None = None) -> tuple[Process, str]:
    port = port or free_port()
    server = Process(["--database-url", database_url, "--api-port", str(port), "server", *args],
                     tmp_path / "run", tmp_path / "server.log")
    processes.append(server)
    url = f"http://127.0.0.1:{port}"
    server.wait_for("the API", lambda: answers(f"{url}/v2.0/networks"))
    return server, url


def test_db_upgrade_then_server_serves_and_counts(tmp_path: Path, any_database_url: str,
                                                  processes: list[Process]) -> None:
    done = run_cli("--database-url", any_database_url, "db", "upgrade", run_dir=tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("database schema is at "), done.stdout
    again = run_cli("--database-url", any_database_url, "db", "upgrade",
                    run_dir=tmp_path / "run")
    assert again.returncode == 0 and again.stdout == done.stdout, again.stderr

    server, url = _server(tmp_path, processes, any_database_url, "--workers", "1")
    created = httpx.post(f"{url}/v2.0/networks", json={"network": {"name": "n1"}}, timeout=10)
    assert created.status_code == 201, created.text
    network_id = created.json()["network"]["id"]
    assert httpx.get(f"{url}/v2.0/networks/{network_id}", timeout=10).status_code == 200
    metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert ('vifwire_api_request_seconds_count{code="201",method="POST",route="/v2.0/networks"} '
            '1.0') in text
    assert ('vifwire_api_request_seconds_count{code="200",method="GET",'
            'route="/v2.0/networks/{id}"} 1.0') in text
    assert "vifwire_outbox_backlog 0.0" in text
    assert server.stop() == 0


def test_server_on_an_old_schema_refuses_with_one_line(tmp_path: Path, pg_url: str) -> None:
    done = run_cli("--database-url", pg_url, "--api-port", str(free_port()), "server",
                   run_dir=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [
        "error: database schema is at nothing (empty database), this vifwire needs "
        f"{_head()}: run `vifwire db upgrade`"], done.stderr


def _head() -> str:
    from vifwire.db.version import head_revision

    return head_revision()


@pytest.mark.parametrize("command", [("server",), ("stack",), ("db", "upgrade")])
def test_unreachable_database_at_start_is_one_line(tmp_path: Path, command: tuple[str, ...],
                                                   ) -> None:
    url = "postgresql+psycopg://root@127.0.0.1:1/test"
    done = run_cli("--database-url", url, "--api-port", str(free_port()), *command,
                   run_dir=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: database {url} is not reachable:"), done.stderr


def test_several_workers_on_the_local_bus_are_refused(tmp_path: Path) -> None:
    done = run_cli("server", "--workers", "2", run_dir=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --workers 2 needs a shared bus: the local bus cannot reach other processes "
        "(give --bus-url amqp://...)"], done.stderr


@pytest.mark.parametrize("command", ["server", "stack"])
def test_unreachable_broker_at_start_is_one_line(tmp_path: Path, pg_url: str,
                                                 command: str) -> None:
    run_cli("--database-url", pg_url, "db", "upgrade", run_dir=tmp_path)
    done = run_cli("--database-url", pg_url, "--bus-url", "amqp://guest:secret@127.0.0.1:1/",
                   "--api-port", str(free_port()), command, run_dir=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot connect to RabbitMQ at "
                                "amqp://guest:***@127.0.0.1:1/: "), done.stderr
    assert "refused" in errors[0] or "failed" in errors[0], errors[0]


def test_a_killed_worker_is_restarted_and_logged(tmp_path: Path, pg_url: str,
                                                 processes: list[Process]) -> None:
    assert run_cli("--database-url", pg_url, "db", "upgrade", run_dir=tmp_path).returncode == 0
    server, url = _server(tmp_path, processes, pg_url, "--workers", "1")
    (worker,) = server.children()
    os.kill(worker, signal.SIGKILL)
    line = f"server worker 0 (pid {worker}) died with signal SIGKILL; restarted as pid "
    server.wait_for("the restart", lambda: line in server.output())
    server.wait_for("the new worker", lambda: answers(f"{url}/v2.0/networks"))
    (restarted,) = server.children()
    assert restarted != worker
    assert server.stop() == 0
    assert not Path(f"/proc/{restarted}").exists()


def test_run_and_state_files_are_private(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    (run_dir / "stack.log").write_text("left world-readable by an older version\n")
    (run_dir / "stack.log").chmod(0o644)
    done = run_cli("db", "upgrade", run_dir=run_dir)
    assert done.returncode == 0, done.stderr
    for path in run_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700

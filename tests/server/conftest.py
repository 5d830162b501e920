"""Fixtures for the server tests: real SQLite and PostgreSQL, the real app, a fake Nova.

PostgreSQL tests use the session's throwaway database (`pg_url`, tests/conftest.py),
wiped before each test. The api tests (tests/api) run on these same fixtures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from vifwire.bus.base import agent_topic
from vifwire.db.schema import metadata
from vifwire.nova_revisions import HEADER, parse_revisions
from vifwire.settings import Settings

from .helpers import HOST, FakeAgent, FakeNova, Stack, running


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


@pytest.fixture
def nova() -> Iterator[FakeNova]:
    fake = FakeNova()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            bad = [e for e in body["events"] if e["server_uuid"] in fake.bad_servers]
            if fake.max_body and len(raw) > fake.max_body:  # oslo's sizelimit, before all
                status = 413
                fake.too_large += 1
                answer = json.dumps({"error": "Request is too large."})
            elif bad:  # Nova validates the whole body: one bad event refuses it all
                status = 400
                fake.refused.append(body["events"])
                answer = json.dumps({"badRequest": {"code": 400, "message": (
                    f"Invalid input for field/attribute server_uuid. Value: "
                    f"{bad[0]['server_uuid']}. '{bad[0]['server_uuid']}' is not a 'uuid'")}})
            else:
                status = fake.statuses.pop(0) if fake.statuses else 200
                if self.path.endswith("/os-server-external-events") and status == 200:
                    with fake.lock:
                        fake.revisions.append(parse_revisions(
                            self.headers.get(HEADER), len(body["events"])))
                        fake.posts.append(body["events"])
                    fake.posted.set()
                answer = json.dumps({"events": [dict(e, code=200) for e in body["events"]]})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v2.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


# "plain": the database speed-ups off (SQLAlchemy's public paths, settings.db_*).
DB_PATHS = {"fast": {}, "plain": {"db_direct_statements": False, "db_held_connections": False}}


@pytest.fixture(params=list(DB_PATHS))
def db_path(request: pytest.FixtureRequest) -> dict[str, bool]:
    return DB_PATHS[request.param]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, nova: FakeNova,
             db_path: dict[str, bool]) -> Settings:
    return Settings(run_dir=tmp_path, host="server-1", database_url=database_url,
                    nova_url=nova.url, **db_path)  # type: ignore[arg-type]


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running(settings) as running_stack:
        yield running_stack


@pytest.fixture
async def agent(stack: Stack) -> FakeAgent:
    fake = FakeAgent()
    await stack.bus.serve(agent_topic(HOST), fake)
    return fake

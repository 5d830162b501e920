"""The whole suite's policy for tests that need a service the machine may lack.

PostgreSQL (127.0.0.1:5432), MariaDB (127.0.0.1:3306) and Chromium are optional
on a developer's machine: a test that cannot reach one is skipped, with the
reason. In CI (the environment variable CI is set, as `.ci/run` runs with
CI=true) every one of them is installed, so a missing one is a broken
environment and the test FAILS: a silently skipped database test would let a
dialect bug through. Every fixture or test that finds its service missing calls
the `unavailable` fixture's function instead of `pytest.skip`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text

ServiceUnavailable = Callable[[str, object], NoReturn]
PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def service_unavailable(service: str, why: object) -> NoReturn:
    """Skip the running test for want of `service`; in CI, fail it."""
    message = f"{service} unavailable: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so every service must be present)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def unavailable() -> ServiceUnavailable:
    return service_unavailable


@pytest.fixture(scope="session")
def pg_url(unavailable: ServiceUnavailable) -> Iterator[str]:
    """One throwaway PostgreSQL database for the whole session (vifwire_t_<pid>)."""
    name = f"vifwire_t_{os.getpid()}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def keystone(unavailable: ServiceUnavailable,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Keystone (Debian's, under uwsgi) for the session: tests/keystone_rig.py."""
    import keystone_rig

    why = keystone_rig.missing()
    if why is not None:
        unavailable("Keystone", why)
    rig = keystone_rig.start(tmp_path_factory.mktemp("keystone"))
    yield rig
    rig.stop()

"""Fixtures for the API tests: the real app over real services, on SQLite and
PostgreSQL and on both database paths, as the server tests run (tests/server)."""

from server.conftest import database_url, db_path, nova, settings, stack  # noqa: F401

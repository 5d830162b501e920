"""The database layer's tests: `pg_url` (tests/conftest.py) is all they share."""

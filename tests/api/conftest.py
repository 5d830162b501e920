"""Fixtures for the API tests: the real app over real services on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.helpers import Stack, running
from vifwire.settings import Settings


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(run_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'api.sqlite'}",
                        nova_url="http://127.0.0.1:9/v2.1")
    async with running(settings) as s:
        yield s

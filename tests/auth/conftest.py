"""Fixtures for the authenticated API: the session's real Keystone (tests/conftest.py),
tokens of its admin and of one member of each of two projects, and the app with
auth_strategy = keystone over SQLite and PostgreSQL (tests/server's database_url)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystone_rig import Keystone
from server.conftest import database_url  # noqa: F401
from server.helpers import Stack, running
from vifwire.settings import Settings


@dataclass
class Caller:
    """One Keystone user scoped to one project, calling the API with its token."""

    name: str
    project_id: str
    token: str
    client: httpx.AsyncClient

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def post(self, collection: str, member: str, **attrs: Any) -> dict[str, Any]:
        answer = await self.call("POST", f"/v2.0/{collection}", json={member: attrs})
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()[member]
        return made


@pytest.fixture(scope="session")
def tokens(keystone: Keystone) -> dict[str, str]:
    return {"admin": keystone.token("admin", "admin"), "alice": keystone.token("alice", "alpha"),
            "bob": keystone.token("bob", "beta")}


def keystone_settings(keystone: Keystone, tmp_path: Path, url: str, **more: Any) -> Settings:
    return Settings(run_dir=tmp_path, host="server-1", database_url=url,
                    nova_url="http://127.0.0.1:9/v2.1", auth_strategy="keystone",
                    keystone_authtoken=keystone.credentials(), **more)


@dataclass
class Cloud:
    stack: Stack
    admin: Caller
    alice: Caller
    bob: Caller


@pytest.fixture
async def cloud(keystone: Keystone, tokens: dict[str, str], tmp_path: Path,
                database_url: str) -> AsyncIterator[Cloud]:  # noqa: F811
    async with running(keystone_settings(keystone, tmp_path, database_url)) as stack:
        def caller(name: str, project: str) -> Caller:
            return Caller(name, keystone.projects[project], tokens[name], stack.client)
        yield Cloud(stack, caller("admin", "admin"), caller("alice", "alpha"),
                    caller("bob", "beta"))

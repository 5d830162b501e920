"""A live vifwire server per module and a clouds.yaml that points the real clients at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import LiveServer, live_server

HOST = "compute-1"
CLOUDS_YAML = """\
clouds:
  vifwire:
    auth_type: none
    network_endpoint_override: {url}/
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("api")) as running:
        running.register_agent(HOST)
        yield running


@pytest.fixture(scope="module")
def clouds_yaml(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    path.write_text(CLOUDS_YAML.format(url=server.url))
    return path

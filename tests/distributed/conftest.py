"""A distributed cluster per test (tests/distributed/cluster.py): its own PostgreSQL
database, private RabbitMQ node, server workers and agent, stopped and removed after."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the agent needs root (Open vSwitch, network namespaces)")
    if shutil.which("rabbitmq-server") is None:
        pytest.fail("rabbitmq-server is not installed")
    made = Cluster(Path(tempfile.mkdtemp(prefix="vw-dist-")), workers=2)
    try:
        made.start()
        yield made
    finally:
        made.stop()

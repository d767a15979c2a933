"""Fixtures of the log engine tests: real nats-server processes (see tests/_nats.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .._nats import NatsCluster, NatsNode


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsNode]:
    """One JetStream node on free loopback ports, stopped by PID at teardown."""
    node = NatsNode("n1", tmp_path / "nats")
    node.start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three routed JetStream nodes, stopped by PID at teardown."""
    cluster = NatsCluster(tmp_path / "nats")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

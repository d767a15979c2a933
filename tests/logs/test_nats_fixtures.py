"""The nats-server fixtures start what they say."""

from __future__ import annotations

import nats
import pytest

from .._loops import ASYNCIO
from .._nats import NatsCluster, NatsNode

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> object:
    return ASYNCIO  # nats-py is asyncio-only


async def test_one_node_runs_jetstream(nats_server: NatsNode) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


async def test_the_cluster_has_three_jetstream_peers(nats_cluster: NatsCluster) -> None:
    nc = await nats.connect(nats_cluster.urls)
    try:
        # an R3 stream is created once the meta leader placed it and its own Raft group
        # elected a leader: seconds a round, more under load than nats-py's default 5 s
        js = nc.jetstream(timeout=20.0)
        info = await js.add_stream(name="probe", subjects=["probe"], num_replicas=3)
        assert info.cluster is not None and info.cluster.leader in {"n1", "n2", "n3"}
        assert len(info.cluster.replicas or []) == 2
    finally:
        await nc.close()


def test_a_killed_node_is_gone_and_starts_again(nats_server: NatsNode) -> None:
    pid = nats_server.pid
    nats_server.kill()
    assert nats_server.process is not None and nats_server.process.returncode == -9
    nats_server.start()
    nats_server.wait_ready()
    assert nats_server.pid != pid

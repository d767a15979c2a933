"""``kill -9`` of the JetStream leader of a namespace's stream on a 3-node NATS cluster,
under a publisher: publishing resumes after the election, nothing acknowledged is lost,
and how long publishing was unavailable is reported (``make test-cluster``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from broadcaster.client import Backoff, Client, Event

from .._nats import NatsCluster
from .conftest import MakeNode
from .test_faults import collect, events

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop"),
              pytest.mark.cluster]

FAST = Backoff(initial=0.02, maximum=0.2)


@pytest.mark.timeout(180)
async def test_killing_the_stream_leader_stops_publishing_only_until_the_election(
    nats_cluster: NatsCluster, make_node: MakeNode,
) -> None:
    urls = nats_cluster.urls
    a = await make_node(urls, log_settings={"replicas": 3, "ack_timeout": 2.0})
    b = await make_node(urls, log_settings={"replicas": 3, "ack_timeout": 2.0})
    async with Client([a.addresses[0], b.addresses[0]], backoff=FAST, timeout=60) as client, \
            Client([b.addresses[0], a.addresses[0]], backoff=FAST) as watching, \
            watching.subscribe("k8s.io") as sub:
        for i in range(20):
            await client.publish("k8s.io", "/tasks/exit", str(i).encode())
        store: Any = a.hub.store
        info = await store.js.stream_info(store.config.stream("k8s.io"))
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        leader = info.cluster.leader
        nats_cluster.node(leader).kill()
        killed = time.monotonic()
        durations: list[float] = []
        for i in range(20, 120):  # each publish is sent again (same id) until it is stored
            started = time.monotonic()
            await client.publish("k8s.io", "/tasks/exit", str(i).encode())
            durations.append(time.monotonic() - started)
        items: list[Any] = []
        await collect(sub, items, lambda got: len(events(got)) >= 120, 60)
        info = await store.js.stream_info(store.config.stream("k8s.io"))
    unavailable = max(durations)
    print(f"\n[cluster] kill -9 of stream leader {leader}: publishing unavailable for "
          f"{unavailable:.2f} s (the first publish after the kill took {durations[0]:.2f} s; "
          f"100 publishes done {time.monotonic() - killed:.2f} s after the kill; new leader "
          f"{info.cluster.leader if info.cluster else '?'})")
    got: list[Event] = events(items)
    assert [e.sequence for e in got] == list(range(1, 121))  # no gap, nothing twice
    assert [e.payload for e in got] == [str(i).encode() for i in range(120)]
    assert info.cluster is not None and info.cluster.leader != leader
    assert info.state.last_seq == 120

"""Two broadcaster nodes on one JetStream log: what is published on one is delivered by
the other, live and on resume, and a client moved from one node to the other mid-stream
misses nothing and gets nothing twice."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest

from broadcaster.client import Backoff, Client, Event, ResyncNotice
from broadcaster.v1 import broadcaster_pb2 as pb

from .._nats import NatsNode
from ..grpc._helpers import add, read_events, read_kind, stub
from .conftest import MakeNode

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

FAST = Backoff(initial=0.02, maximum=0.2)


async def take(sub: Any, count: int, within: float = 15.0) -> list[Any]:
    """The next *count* items of *sub* that are events (others are kept too)."""
    out: list[Any] = []
    with anyio.fail_after(within):
        async for item in sub:
            out.append(item)
            if sum(isinstance(i, Event) for i in out) == count:
                return out
    raise AssertionError(f"subscription ended after {out}")


async def test_published_on_a_delivered_by_b_live_and_from_since(
    nats_server: NatsNode, make_node: MakeNode,
) -> None:
    a = await make_node([nats_server.url])
    b = await make_node([nats_server.url])
    async with Client(a.addresses[0]) as on_a, Client(b.addresses[0]) as on_b:
        early = [await on_a.publish("k8s.io", "/tasks/start", f"e{i}".encode())
                 for i in range(3)]
        assert early == [1, 2, 3]
        async with on_b.subscribe("k8s.io") as live, on_b.subscribe(
            "k8s.io", since=1, epoch=a.hub.epoch_of("k8s.io"),
        ) as resumed:
            for i in range(3, 6):
                await on_a.publish("k8s.io", "/tasks/exit", f"e{i}".encode())
            got_live = await take(live, 3)
            got_resumed = await take(resumed, 5)
    assert [(e.sequence, e.payload) for e in got_live] == [(4, b"e3"), (5, b"e4"), (6, b"e5")]
    assert [e.sequence for e in got_resumed] == [2, 3, 4, 5, 6]
    assert all(isinstance(e, Event) for e in got_resumed)  # same epoch: no resync
    # one epoch for the namespace on every node: the stream's incarnation
    assert a.hub.epoch_of("k8s.io") == b.hub.epoch_of("k8s.io") != ""
    assert a.hub.epoch == b.hub.epoch == ""


async def test_the_wire_carries_each_namespace_epoch(
    nats_server: NatsNode, make_node: MakeNode,
) -> None:
    a = await make_node([nats_server.url])
    b = await make_node([nats_server.url])
    async with grpc.aio.insecure_channel(a.addresses[0]) as ch_a, \
            grpc.aio.insecure_channel(b.addresses[0]) as ch_b:
        first = await stub(ch_a).Publish(pb.PublishRequest(namespace="x", topic="/t"))
        second = await stub(ch_a).Publish(pb.PublishRequest(namespace="y", topic="/t"))
        assert first.epoch != second.epoch  # a stream each
        call = stub(ch_b).Subscribe()
        await call.write(add("s", ("x", "y"), since={"x": 0, "y": 1},
                             epochs={"x": first.epoch, "y": "an-old-incarnation"}))
        result = await read_kind(call, "add_result")
        assert dict(result.epochs) == {"x": first.epoch, "y": second.epoch}
        assert result.epoch == ""  # two namespaces, two epochs
        resync = await read_kind(call, "resync_notice", skip=("heartbeat", "event_batch"))
        assert (resync.namespace, resync.reason, resync.epoch) == (
            "y", "epoch_changed", second.epoch)
        heartbeat = await read_kind(call, "heartbeat", skip=("event_batch",))
        assert dict(heartbeat.epochs) == {"x": first.epoch, "y": second.epoch}
        call.cancel()


async def test_a_repeated_event_id_is_stored_once_on_any_node(
    nats_server: NatsNode, make_node: MakeNode,
) -> None:
    a = await make_node([nats_server.url])
    b = await make_node([nats_server.url])
    async with Client(a.addresses[0]) as on_a, Client(b.addresses[0]) as on_b:
        seq = await on_a.publish("default", "/tasks/exit", b"once", event_id="exit-c1-42")
        again = await on_b.publish("default", "/tasks/exit", b"once", event_id="exit-c1-42")
        other = await on_b.publish("default", "/tasks/exit", b"other")
        stats = await on_b.stats(["default"])
    assert (seq, again, other) == (1, 1, 2)
    assert stats.namespaces[0].head_sequence == 2
    assert stats.namespaces[0].deduplicated == 1


async def test_a_client_moved_from_a_to_b_mid_stream_misses_nothing_and_repeats_nothing(
    nats_server: NatsNode, make_node: MakeNode,
) -> None:
    a = await make_node([nats_server.url])
    b = await make_node([nats_server.url])
    total = 300
    async with Client([a.addresses[0], b.addresses[0]], backoff=FAST) as watcher, \
            Client(b.addresses[0]) as publisher, watcher.subscribe("k8s.io") as sub:
        assert watcher.current_address == a.addresses[0]
        received: list[Any] = []
        moved = anyio.Event()

        async def publish() -> None:
            async with publisher.publisher("k8s.io", max_batch=10) as pub:
                for i in range(total):
                    await pub.publish("/tasks/exit", str(i).encode())
                    if i == total // 3:
                        await a.stop(grace=0)  # node A goes away mid-stream
                        moved.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            received = await take(sub, total, within=30)
        assert moved.is_set()
        assert watcher.current_address == b.addresses[0] and watcher.failovers == 1
    events = [i for i in received if isinstance(i, Event)]
    assert not [i for i in received if isinstance(i, ResyncNotice)]
    assert [e.sequence for e in events] == list(range(1, total + 1))  # no gap, no duplicate
    assert [e.payload for e in events] == [str(i).encode() for i in range(total)]


async def test_namespaces_used_on_a_reach_all_namespace_subscribers_on_b(
    nats_server: NatsNode, make_node: MakeNode,
) -> None:
    a = await make_node([nats_server.url])
    b = await make_node([nats_server.url])
    async with grpc.aio.insecure_channel(b.addresses[0]) as ch_b, \
            grpc.aio.insecure_channel(a.addresses[0]) as ch_a:
        call = stub(ch_b).Subscribe()
        await call.write(add("all"))
        await read_kind(call, "add_result")
        # "fresh" was never used on B: its stream is created by A's publish
        for i in range(3):
            await stub(ch_a).Publish(pb.PublishRequest(namespace="fresh", topic=f"/t/{i}"))
        events = await read_events(call, 3, within=15)
        assert [(e.namespace, e.sequence) for _, e in events] == [("fresh", 1), ("fresh", 2),
                                                                  ("fresh", 3)]
        call.cancel()

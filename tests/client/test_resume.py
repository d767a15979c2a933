"""Reconnect and resume, heartbeats, drop notices: the client over real connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import grpc
import grpc.aio
import pytest

from broadcaster import HubConfig, Policy
from broadcaster.client import Backoff, Client, DropNotice, Event, ResyncNotice
from broadcaster.v1 import broadcaster_pb2 as pb

from .conftest import CuttableProxy, MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

FAST = Backoff(initial=0.02, maximum=0.2)


async def _wait_for(condition: Any, within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.01)


async def _take(sub: Any, count: int, within: float = 10.0) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(within):
        async for item in sub:
            out.append(item)
            if len(out) == count:
                return out
    raise AssertionError(f"subscription ended after {out}")


async def test_transient_disconnect_resumes_without_gap(
    server: Any, proxy_to: CuttableProxy
) -> None:
    async with Client(proxy_to.address, backoff=FAST) as direct_less:
        async with direct_less.subscribe("ns") as sub, Client(server.addresses[0]) as direct:
            for i in range(5):
                await direct.publish("ns", "/e", str(i).encode())
            before = await _take(sub, 5)
            proxy_to.cut()
            # published while the subscriber is (probably) cut off
            for i in range(5, 10):
                await direct.publish("ns", "/e", str(i).encode())
            after = await _take(sub, 5)
            await _wait_for(lambda: proxy_to.connections >= 2)
            for i in range(10, 12):
                await direct.publish("ns", "/e", str(i).encode())
            tail = await _take(sub, 2)
    items = before + after + tail
    assert all(isinstance(i, Event) for i in items), items
    assert [i.sequence for i in items] == list(range(1, 13))
    assert [i.payload for i in items] == [str(n).encode() for n in range(12)]
    assert direct_less.subscribe_stream is not None
    assert direct_less.subscribe_stream.connects >= 2


async def test_new_server_on_same_socket_gives_resync(
    make_server: MakeServer, tmp_path: Path
) -> None:
    listen = [f"unix:{tmp_path / 'b.sock'}"]
    hub = HubConfig(heartbeat_interval=0.05)
    async with Client(listen[0], backoff=FAST) as client:
        async with make_server(hub=hub, listen=listen) as first:
            sub = client.subscribe("ns")
            await sub.start()
            for i in range(3):
                await client.publish("ns", "/e", str(i).encode())
            old = await _take(sub, 3)
            await _wait_for(lambda: sub.epoch == first.hub.epoch)
            old_epoch = first.hub.epoch
        assert sub.cursors == {"ns": 3}
        async with make_server(hub=hub, listen=listen) as second:
            assert second.hub.epoch != old_epoch
            await client.publish("ns", "/e", b"new-1")
            await client.publish("ns", "/e", b"new-2")
            notice, *events = await _take(sub, 3)
            await sub.aclose()
    assert [e.sequence for e in old] == [1, 2, 3]
    assert notice == ResyncNotice("ns", 3, 1, "epoch_changed", second.hub.epoch)
    assert [(e.sequence, e.payload) for e in events] == [(1, b"new-1"), (2, b"new-2")]
    assert sub.epoch == second.hub.epoch and sub.cursors == {"ns": 2}


async def test_heartbeat_acks_keep_an_idle_subscription_alive(
    make_server: MakeServer,
) -> None:
    # Eviction after 0.5 s without an ack: generous enough that a loaded CI
    # machine does not delay one ack past it, short enough to keep the test fast.
    hub = HubConfig(heartbeat_interval=0.1, max_missed_heartbeats=5)
    async with make_server(hub=hub) as server, Client(server.addresses[0]) as client:
        async with client.subscribe("ns") as sub:
            stream = client.subscribe_stream
            assert stream is not None
            # 15 heartbeats = 3 times the eviction threshold
            await _wait_for(lambda: stream.heartbeats_acked >= 15)
            await client.publish("ns", "/alive", b"")
            [event] = await _take(sub, 1)
        assert isinstance(event, Event) and event.topic == "/alive"
        assert not server.hub.statistics().namespaces["ns"].evicted
        await _raw_subscriber_without_acks_is_evicted(server.addresses[0])


async def _raw_subscriber_without_acks_is_evicted(address: str) -> None:
    """The control: the same server evicts a stream that never acks."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/broadcaster.v1.Broadcaster/Subscribe",
            request_serializer=pb.SubscribeRequest.SerializeToString,
            response_deserializer=pb.SubscribeResponse.FromString,
        )()
        await call.write(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
            subscription_id="raw", namespaces=["ns"])))
        with anyio.fail_after(10):
            while True:
                msg = await call.read()
                assert msg is not grpc.aio.EOF
                if msg.WhichOneof("kind") == "subscription_ended":
                    assert msg.subscription_ended.reason == "heartbeat_timeout"
                    break
        call.cancel()


async def test_slow_consumer_sees_exact_drop_notice(server: Any) -> None:
    resume = anyio.Event()
    paused = anyio.Event()
    items: list[Any] = []
    payload = b"x" * 4096
    async with Client(server.addresses[0], buffer=1) as client:
        sub = client.subscribe("ns", policy=Policy.drop_newest(2))
        await sub.start()

        async def consume() -> None:
            async for item in sub:
                items.append(item)
                if len(items) == 1:
                    paused.set()
                    await resume.wait()
                if isinstance(item, Event) and item.topic == "/marker":
                    return

        # bounded: a marker lost to the policy would otherwise leave consume() waiting
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                published = 1
                await client.publish("ns", "/e", payload)
                with anyio.fail_after(5):
                    await paused.wait()
                async with client.publisher("ns", max_batch=50) as pub:
                    # bounded: stop once the server reports drops for this subscription
                    with anyio.fail_after(20):
                        while published < 20_000:
                            for _ in range(50):
                                await pub.submit("/e", payload)
                            published += 50
                            await pub.flush()
                            if server.hub.statistics().namespaces["ns"].dropped:
                                break
                resume.set()
                marker = await client.publish("ns", "/marker", b"")
        await sub.aclose()
    notices = [i for i in items if isinstance(i, DropNotice)]
    events = [i.sequence for i in items if isinstance(i, Event)]
    assert notices and all(n.reason == "drop_newest" for n in notices)
    assert events[-1] == marker == published + 1
    dropped = [s for n in notices for s in range(n.first_sequence, n.last_sequence + 1)]
    assert sum(n.count for n in notices) == len(dropped)
    # every sequence is either delivered or reported dropped, exactly once
    assert sorted(events + dropped) == list(range(1, marker + 1))
    assert server.hub.statistics().namespaces["ns"].dropped["drop_newest"] == len(dropped)


@pytest.mark.parametrize("namespaces", [["quiet"], None], ids=["one namespace", "all namespaces"])
async def test_resume_before_the_first_event_misses_nothing(
    server: Any, proxy_to: CuttableProxy, namespaces: list[str] | None
) -> None:
    """A watcher that has received nothing yet (no exit happened) and loses its connection
    must still get the exits published during the outage, including in namespaces created
    while it was away."""
    async with Client(proxy_to.address, backoff=FAST) as watcher, \
            Client(server.addresses[0]) as direct:
        await direct.publish("quiet", "/tasks/start", b"old")  # exists before the Add
        async with watcher.subscribe(namespaces) as sub:
            assert sub.cursors == {"quiet": 1}  # from the AddResult: nothing received yet
            proxy_to.cut()
            await _wait_for(lambda: server.hub.subscription_count == 0)
            await direct.publish("quiet", "/tasks/exit", b"during")
            await direct.publish("born-during-outage", "/tasks/exit", b"new")
            expected = 2 if namespaces is None else 1
            rest = await _take(sub, expected)
    got = sorted((i.namespace, i.payload) for i in rest)
    want = [("quiet", b"during")]
    if namespaces is None:
        want = [("born-during-outage", b"new"), ("quiet", b"during")]
    assert got == want

"""The client over real gRPC connections to a real Server."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest

from broadcaster import HubConfig, InvalidTopic, NamespaceConfig, Policy
from broadcaster.client import Client, Event, InvalidArgumentError, PublishError, SubscribeError
from broadcaster.containerd.events import task_pb2

from .conftest import MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


async def _events(sub: Any, count: int, within: float = 10.0) -> list[Event]:
    out: list[Event] = []
    with anyio.fail_after(within):
        async for item in sub:
            assert isinstance(item, Event), item
            out.append(item)
            if len(out) == count:
                return out
    raise AssertionError(f"subscription ended after {out}")


async def test_publish_subscribe_round_trip(server: Any) -> None:
    exit_msg = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=137)
    async with Client(server.addresses[0]) as client:
        async with client.subscribe("ns1", filters=['topic~="^/tasks/"']) as sub:
            seq1 = await client.publish("ns1", "/tasks/exit", exit_msg, labels={"app": "web"},
                                        timestamp=1_700_000_000_123_456_789)
            seq2 = await client.publish("ns1", "/other", b"skipped by the filter")
            seq3 = await client.publish("ns1", "/tasks/start", b"raw", type_url="x.Raw")
            first, second = await _events(sub, 2)
    assert (seq1, seq2, seq3) == (1, 2, 3)
    assert first == Event("ns1", "/tasks/exit", 1, "containerd.events.TaskExit",
                          exit_msg.SerializeToString(), 1_700_000_000_123_456_789,
                          {"app": "web"})
    assert task_pb2.TaskExit.FromString(first.payload) == exit_msg
    assert (second.sequence, second.type_url, second.payload) == (3, "x.Raw", b"raw")


async def test_publish_errors_name_the_field(make_server: MakeServer) -> None:
    hub = HubConfig(namespaces={"tiny": NamespaceConfig(max_payload_bytes=10)})
    async with make_server(hub=hub) as server, Client(server.addresses[0]) as client:
        with pytest.raises(PublishError) as info:
            await client.publish("tiny", "/t", b"x" * 11)
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.field == "payload"
        with pytest.raises(InvalidArgumentError, match="topic") as bad:
            await client.publish("tiny", "no-slash", b"")
        # a client error, chained to the core's
        assert bad.value.field == "topic" and isinstance(bad.value.__cause__, InvalidTopic)
        assert await client.publish("tiny", "/t", b"x" * 10) == 1


async def test_publish_times_out_without_server() -> None:
    async with Client("127.0.0.1:1", timeout=0.3) as client:
        with anyio.fail_after(5), pytest.raises(PublishError) as info:
            await client.publish("ns", "/t", b"")
    assert info.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


async def test_batched_publisher_acks_in_order_and_reports_rejected_batch(
    make_server: MakeServer,
) -> None:
    hub = HubConfig(namespaces={"ns": NamespaceConfig(max_payload_bytes=100)})
    async with make_server(hub=hub) as server, Client(server.addresses[0]) as client:
        async with client.subscribe("ns") as sub:
            async with client.publisher("ns", max_batch=100, max_in_flight=300) as pub:
                futures = [await pub.submit("/e", str(i).encode()) for i in range(1000)]
                await pub.flush()
                assert [f.result() for f in futures] == list(range(1, 1001))
                bad = [await pub.submit("/e", b"ok"), await pub.submit("/e", b"x" * 101)]
                await pub.flush()
                for index, future in enumerate(bad):
                    with pytest.raises(PublishError) as info:
                        future.result()
                    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert info.value.field == "events[1].payload"
                    assert info.value.index == index
                # the stream stays open after a rejected batch
                assert await pub.publish("/e", b"after") == 1001
            got = await _events(sub, 1001)
    assert [e.sequence for e in got] == list(range(1, 1002))
    assert got[999].payload == b"999" and got[1000].payload == b"after"


async def test_many_subscriptions_share_one_stream(server: Any) -> None:
    async with Client(server.addresses[0]) as client:
        async with (
            client.subscribe("a") as sub_a,
            client.subscribe(["a", "b"], filters=['topic=="/x"']) as sub_ab,
            client.subscribe(None) as sub_all,
        ):
            await client.publish("a", "/x", b"1")
            await client.publish("b", "/y", b"2")
            await client.publish("b", "/x", b"3")
            only_a = await _events(sub_a, 1)
            ab = await _events(sub_ab, 2)
            everything = await _events(sub_all, 3)
            assert server.subscribe_streams == 1
            assert len({sub_a.id, sub_ab.id, sub_all.id}) == 3
    assert [e.payload for e in only_a] == [b"1"]
    assert [e.payload for e in ab] == [b"1", b"3"]
    assert [(e.namespace, e.payload) for e in everything] == [("a", b"1"), ("b", b"2"),
                                                               ("b", b"3")]


async def test_rejected_add_raises_with_field_and_stream_survives(server: Any) -> None:
    async with Client(server.addresses[0]) as client, client.subscribe("ns") as good:
        with pytest.raises(SubscribeError) as info:
            async with client.subscribe("ns", filters=["topic==", 'topic=="/a"']):
                pass
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.field.startswith("filters[0]")
        await client.publish("ns", "/a", b"still here")
        [event] = await _events(good, 1)
        assert event.payload == b"still here"


async def test_subscribe_times_out_without_server() -> None:
    async with Client("127.0.0.1:1", timeout=0.5) as client:
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            async with client.subscribe("ns"):
                pass


async def test_a_stalled_consumer_on_its_own_stream_holds_up_no_one(server: Any) -> None:
    """A consumer that stops reading fills its buffer and pauses its stream. With a stream
    of its own, the client's other subscriptions go on. (On the shared stream they wait:
    with ``own_stream=False`` the healthy subscription stops short of the 120 events.)"""
    payload = b"x" * 16384
    total = 120  # ~2 MB: far past the stalled stream's HTTP/2 windows and buffer of 1
    async with Client(server.addresses[0], buffer=1) as client:
        stalled = client.subscribe("ns", policy=Policy.drop_newest(4), own_stream=True)
        await stalled.start()
        async with client.subscribe("ns", policy=Policy.drop_newest(total)) as healthy:
            assert server.subscribe_streams == 2
            async with client.publisher("ns", max_batch=10) as pub:
                for _ in range(total):
                    await pub.submit("/e", payload)
            got: list[Any] = []
            with anyio.fail_after(10):
                async for item in healthy:
                    got.append(item)
                    if len(got) == total:
                        break
        assert [e.sequence for e in got] == list(range(1, total + 1))
        dropped = server.hub.statistics().namespaces["ns"].dropped
        assert dropped["drop_newest"] > 0  # the stalled one lost events, counted
        await stalled.aclose()
        await _wait(lambda: server.subscribe_streams == 1)  # its own stream closed with it


async def _wait(condition: Any, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.01)

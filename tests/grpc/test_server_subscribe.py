"""broadcaster.v1 Subscribe over real connections: batching, rejects, remove, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import grpc
import pytest
from google.protobuf import any_pb2

from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import (
    add,
    publish,
    read_events,
    read_kind,
    remove,
    stub,
    wait_acked,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


async def test_one_event_goes_once_to_all_matching_subscriptions(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("a", ("default",)))
        await call.write(add("b"))
        await call.write(add("c", ("other",)))
        for sid in "abc":
            result = await read_kind(call, "add_result")
            assert (result.subscription_id, result.ok) == (sid, True)
        payload = any_pb2.Any(type_url="containerd.events.TaskExit", value=b"\x01\x02")
        response = await publish(channel, "default", "/tasks/exit", payload=payload,
                                  labels={"app": "web"})
        assert response.sequence == 1 and response.epoch == server.hub.epoch_of("default")
        [(ids, event)] = await read_events(call, 1)
        assert sorted(ids) == ["a", "b"]
        assert (event.namespace, event.topic, event.sequence) == ("default", "/tasks/exit", 1)
        assert event.payload == payload and dict(event.labels) == {"app": "web"}
        await publish(channel, "other", "/x")
        [(ids, event)] = await read_events(call, 1)
        assert sorted(ids) == ["b", "c"] and event.namespace == "other"
        call.cancel()


async def test_batched_events_go_once_each_with_every_matching_id(server: Server) -> None:
    """Subscriptions reading the same events share deliveries; a filtered one, whose
    reads differ, is merged into the same events in order (both encoder paths)."""
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        for sid in ("a", "b", "c"):
            await call.write(add(sid, ("default",)))
        await call.write(add("odd", ("default",), filters=['topic~="^/odd"']))
        for _ in range(4):
            assert (await read_kind(call, "add_result")).ok
        batch = pb.PublishStreamRequest(batch_id=1, events=[
            pb.PublishRequest(namespace="default", topic="/odd" if i % 2 else "/even")
            for i in range(200)])
        publisher = stub(channel).PublishStream()
        await publisher.write(batch)
        response = await publisher.read()
        assert list(response.sequences) == list(range(1, 201))
        events = await read_events(call, 200)
        assert [e.sequence for _, e in events] == list(range(1, 201))
        for ids, event in events:
            expected = ["a", "b", "c", "odd"] if event.topic == "/odd" else ["a", "b", "c"]
            assert sorted(ids) == expected, (event.sequence, ids)
        publisher.cancel()
        call.cancel()


async def test_unix_socket_serves(server: Server) -> None:
    address = server.addresses[1]
    assert address.startswith("unix:")
    async with grpc.aio.insecure_channel(address) as channel:
        assert (await publish(channel, "default", "/a")).sequence == 1


async def test_replay_since_and_order(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        for i in range(5):
            await publish(channel, "k8s.io", f"/t/{i}")
        call = stub(channel).Subscribe()
        await call.write(add("r", ("k8s.io",), since={"k8s.io": 2},
                             epoch=server.hub.epoch_of("k8s.io")))
        assert (await read_kind(call, "add_result")).ok
        events = await read_events(call, 3)
        assert [e.sequence for _, e in events] == [3, 4, 5]
        call.cancel()


@pytest.mark.parametrize(
    ("request_fields", "code", "needle"),
    [
        ({"subscription_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id:"),
        ({"subscription_id": "x" * 300}, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id:"),
        ({"subscription_id": "dup"}, grpc.StatusCode.ALREADY_EXISTS, "subscription_id:"),
        ({"subscription_id": "n", "namespaces": ["default", "Bad Name!"]},
         grpc.StatusCode.INVALID_ARGUMENT, "namespaces[1]"),
        ({"subscription_id": "f", "filters": ["topic==", "topic~="]},
         grpc.StatusCode.INVALID_ARGUMENT, "filters[0]"),
        ({"subscription_id": "p", "policy": pb.OverflowPolicy(
            kind=pb.OverflowPolicy.BLOCK, fallback=pb.OverflowPolicy.RETRY)},
         grpc.StatusCode.INVALID_ARGUMENT, "policy.fallback"),
        ({"subscription_id": "p2", "policy": pb.OverflowPolicy(max_events=10**9)},
         grpc.StatusCode.INVALID_ARGUMENT, "policy.max_events"),
        ({"subscription_id": "p3", "policy": pb.OverflowPolicy(kind=42)},
         grpc.StatusCode.INVALID_ARGUMENT, "policy.kind"),
    ],
)
async def test_rejected_add_keeps_the_stream_usable(
    server: Server, request_fields: dict[str, Any], code: grpc.StatusCode, needle: str
) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        other = stub(channel).Subscribe()
        await other.write(add("watcher", ("default",)))
        assert (await read_kind(other, "add_result")).ok
        call = stub(channel).Subscribe()
        await call.write(add("dup", ("default",)))
        assert (await read_kind(call, "add_result")).ok
        await call.write(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(**request_fields)))
        result = await read_kind(call, "add_result")
        assert not result.ok
        assert result.error.code == code.value[0]
        assert result.error.message.startswith(needle), result.error.message
        assert server.hub.subscription_count == 2
        await publish(channel, "default", "/after")
        for stream in (call, other):
            [(_, event)] = await read_events(stream, 1)
            assert event.topic == "/after"
        call.cancel()
        other.cancel()


async def test_per_stream_subscription_limit(make_server: Any) -> None:
    server = await make_server(max_subscriptions_per_stream=2)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        for sid in ("a", "b", "c"):
            await call.write(add(sid))
        results = [await read_kind(call, "add_result") for _ in range(3)]
        assert [r.ok for r in results] == [True, True, False]
        assert results[2].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert results[2].error.message.startswith("subscription_id:")
        await call.write(remove("a"))
        assert (await read_kind(call, "removed")).subscription_id == "a"
        await call.write(add("c"))
        assert (await read_kind(call, "add_result")).ok
        call.cancel()


async def test_remove_stops_deliveries_and_unknown_id_is_answered(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("a", ("default",)))
        await call.write(add("b", ("default",)))
        await read_kind(call, "add_result")
        await read_kind(call, "add_result")
        await call.write(remove("a"))
        assert (await read_kind(call, "removed")).subscription_id == "a"
        assert server.hub.subscription_count == 1
        await call.write(remove("nobody"))
        assert (await read_kind(call, "removed")).subscription_id == "nobody"
        await publish(channel, "default", "/x")
        [(ids, _)] = await read_events(call, 1)
        assert ids == ["b"]
        call.cancel()


async def test_cancel_closes_every_subscription_of_the_stream(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        for i in range(5):
            await call.write(add(f"s{i}"))
        for _ in range(5):
            await read_kind(call, "add_result")
        assert server.hub.subscription_count == 5
        call.cancel()
        await wait_until(lambda: server.hub.subscription_count == 0)
        await wait_until(lambda: server.subscribe_streams == 0)


async def test_half_close_without_subscriptions_ends_the_stream(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("bad", ("",)))
        await call.done_writing()
        result = await read_kind(call, "add_result")
        assert not result.ok and result.error.message.startswith("namespaces[0]")
        with anyio.fail_after(5):
            assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


_SUBSCRIBER = textwrap.dedent("""
    import asyncio, sys, grpc
    from broadcaster.v1 import broadcaster_pb2 as pb, broadcaster_pb2_grpc as pbg
    async def main():
        async with grpc.aio.insecure_channel(sys.argv[1]) as ch:
            call = pbg.BroadcasterStub(ch).Subscribe()
            for i in range(3):
                await call.write(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
                    subscription_id=f"s{i}")))
            for i in range(3):
                await call.read()
            print("ready", flush=True)
            await asyncio.sleep(3600)
    asyncio.run(main())
""")


async def test_killed_subscriber_process_is_cleaned_up(server: Server) -> None:
    process = await anyio.open_process(
        [sys.executable, "-c", _SUBSCRIBER, server.addresses[0]],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            assert b"ready" in await process.stdout.receive()
        assert server.hub.subscription_count == 3
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        await wait_until(lambda: server.hub.subscription_count == 0, within=10)
        await wait_until(lambda: server.subscribe_streams == 0, within=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


async def test_heartbeats_are_sent_once_per_stream_and_acks_keep_it_alive(
    make_server: Any,
) -> None:
    from broadcaster import HubConfig

    # eviction only after 500 s without an ack: whether acks counted is read from the hub
    # once they were handled, not raced against a real-time limit (0.15 s was, under load)
    server = await make_server(hub=HubConfig(heartbeat_interval=0.05,
                                             max_missed_heartbeats=10_000))
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        for sid in ("a", "b", "c"):
            await call.write(add(sid, ("default",)))
        await publish(channel, "default", "/x")
        seen: list[int] = []
        delivered = False
        with anyio.fail_after(10):
            while len(seen) < 8:
                response = await call.read()
                kind = response.WhichOneof("kind")
                assert kind in ("add_result", "event_batch", "heartbeat"), response
                delivered = delivered or kind == "event_batch"
                if kind == "heartbeat":
                    hb = response.heartbeat
                    assert hb.epoch == server.hub.epoch_of("default")
                    assert dict(hb.epochs) == {"default": server.hub.epoch_of("default")}
                    # (a durable log may take longer than a heartbeat to store the event)
                    assert dict(hb.latest_sequences) in ({"default": 1}, {"default": 0})
                    if delivered:
                        assert dict(hb.latest_sequences) == {"default": 1}
                    seen.append(hb.heartbeat_id)
                    await call.write(pb.SubscribeRequest(
                        ack=pb.SubscribeRequest.Ack(heartbeat_id=hb.heartbeat_id)))
                    await wait_acked(server.hub, hb.heartbeat_id, 3)  # one ack, all three
        assert seen == sorted(set(seen)), "one heartbeat per stream tick, increasing"
        assert server.hub.subscription_count == 3
        assert server.hub.statistics().heartbeat_acks_ignored == 0
        call.cancel()


async def test_without_acks_subscriptions_end_with_heartbeat_timeout(make_server: Any) -> None:
    from broadcaster import HubConfig

    server = await make_server(hub=HubConfig(heartbeat_interval=0.05, max_missed_heartbeats=2))
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("lazy"))
        assert (await read_kind(call, "add_result")).ok
        ended = await read_kind(call, "subscription_ended")
        assert (ended.subscription_id, ended.reason) == ("lazy", "heartbeat_timeout")
        assert server.hub.subscription_count == 0
        call.cancel()


async def test_slow_reader_gets_drop_notices_and_fast_one_loses_nothing(
    make_server: Any,
) -> None:
    server = await make_server(batch_max_events=8, batch_linger=0)
    total = 3000
    payload = any_pb2.Any(type_url="t", value=b"x" * 2000)
    async with grpc.aio.insecure_channel(server.addresses[0]) as fast_ch, \
            grpc.aio.insecure_channel(server.addresses[0]) as slow_ch:
        fast = stub(fast_ch).Subscribe()
        slow = stub(slow_ch).Subscribe()
        await fast.write(add("fast", ("default",), policy=pb.OverflowPolicy(
            kind=pb.OverflowPolicy.DROP_NEWEST, max_events=total)))
        await slow.write(add("slow", ("default",), policy=pb.OverflowPolicy(
            kind=pb.OverflowPolicy.DROP_NEWEST, max_events=16)))
        assert (await read_kind(fast, "add_result")).ok
        assert (await read_kind(slow, "add_result")).ok
        publisher = stub(fast_ch).PublishStream()
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < total:
                batch = await read_kind(fast, "event_batch", within=20)
                received.extend(d.event.sequence for d in batch.deliveries)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_fast)
            for batch_id in range(total // 100):
                await publisher.write(pb.PublishStreamRequest(batch_id=batch_id, events=[
                    pb.PublishRequest(namespace="default", topic="/x", payload=payload)
                    for _ in range(100)]))
                assert not (await publisher.read()).HasField("error")
        assert received == list(range(1, total + 1))
        # Now drain the slow one: it must see drops counted in-band.
        dropped = delivered = 0
        with anyio.fail_after(20):
            while dropped + delivered < total:
                response = await slow.read()
                kind = response.WhichOneof("kind")
                if kind == "drop_notice":
                    assert response.drop_notice.subscription_id == "slow"
                    dropped += response.drop_notice.count
                elif kind == "event_batch":
                    delivered += len(response.event_batch.deliveries)
        assert dropped > 0 and dropped + delivered == total
        stats = server.hub.statistics().namespaces["default"]
        assert sum(stats.dropped.values()) == dropped
        for call in (fast, slow, publisher):
            call.cancel()


async def test_graceful_stop_ends_subscriptions_after_flushing(make_server: Any) -> None:
    server = await make_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("a", ("default",)))
        await call.write(add("b", ("default",)))
        await read_kind(call, "add_result")
        await read_kind(call, "add_result")
        for _ in range(10):
            await publish(channel, "default", "/x")
        with anyio.fail_after(10):
            await server.stop()
        assert not server.serving
        pairs: list[tuple[str, int]] = []
        ended: set[str] = set()
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                break
            kind = response.WhichOneof("kind")
            if kind == "event_batch":
                pairs += [(sid, d.event.sequence) for d in response.event_batch.deliveries
                          for sid in d.subscription_ids]
            elif kind == "subscription_ended":
                assert response.subscription_ended.reason == "hub_closed"
                ended.add(response.subscription_ended.subscription_id)
        assert sorted(pairs) == [(sid, seq) for sid in "ab" for seq in range(1, 11)]
        assert ended == {"a", "b"}
        assert await call.code() == grpc.StatusCode.OK

"""Publish, PublishStream and Stats over real connections: results and every bad input."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import grpc
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from broadcaster import HubConfig, NamespaceConfig, Retention
from broadcaster.grpc import Server
from broadcaster.grpc._service import _runs
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, publish, read_events, read_kind, stub

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


def _req(namespace: str = "default", topic: str = "/x", **fields: Any) -> pb.PublishRequest:
    return pb.PublishRequest(namespace=namespace, topic=topic, **fields)


async def test_publish_keeps_payload_type_url_and_timestamp(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("a"))
        await read_kind(call, "add_result")
        ts = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)
        payload = any_pb2.Any(type_url="type.googleapis.com/x.Y", value=b"\x00\xff")
        response = await publish(channel, "moby", "/containers/create", payload=payload,
                                  timestamp=ts)
        assert (response.namespace, response.sequence) == ("moby", 1)
        [(_, event)] = await read_events(call, 1)
        assert event.payload == payload and event.timestamp == ts
        call.cancel()


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (_req(namespace=""), grpc.StatusCode.INVALID_ARGUMENT, "namespace:"),
        (_req(namespace="bad name"), grpc.StatusCode.INVALID_ARGUMENT, "namespace:"),
        (_req(topic="no-slash"), grpc.StatusCode.INVALID_ARGUMENT, "topic:"),
        (_req(topic=""), grpc.StatusCode.INVALID_ARGUMENT, "topic:"),
        (_req(timestamp=timestamp_pb2.Timestamp(seconds=1, nanos=-1)),
         grpc.StatusCode.INVALID_ARGUMENT, "timestamp:"),
        (_req(namespace="small", payload=any_pb2.Any(value=b"x" * 200)),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "payload:"),
        (_req(event_id="with space"), grpc.StatusCode.INVALID_ARGUMENT, "event_id:"),
        (_req(event_id="x" * 129), grpc.StatusCode.INVALID_ARGUMENT, "event_id:"),
    ],
)
async def test_publish_rejects_bad_input_naming_the_field(
    make_server: Any, request_: pb.PublishRequest, code: grpc.StatusCode, needle: str
) -> None:
    hub = HubConfig(namespaces={"small": NamespaceConfig(max_payload_bytes=100)})
    server = await make_server(hub=hub)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(channel).Publish(request_)
        assert info.value.code() == code
        assert (info.value.details() or "").startswith(needle), info.value.details()
        assert (await publish(channel, "default", "/ok")).sequence == 1


async def test_oversized_message_is_refused(make_server: Any) -> None:
    server = await make_server(max_receive_message_bytes=1024)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(channel).Publish(_req(payload=any_pb2.Any(value=b"x" * 4096)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_publish_stream_acks_batches_and_survives_a_bad_one(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        sub = stub(channel).Subscribe()
        await sub.write(add("all"))
        await read_kind(sub, "add_result")
        call = stub(channel).PublishStream()
        await call.write(pb.PublishStreamRequest(batch_id=7, events=[_req(), _req()]))
        ok = await call.read()
        epoch = server.hub.epoch_of("default")
        assert (ok.batch_id, list(ok.sequences), ok.epoch) == (7, [1, 2], epoch)
        assert dict(ok.epochs) == {"default": epoch}
        await call.write(pb.PublishStreamRequest(
            batch_id=8, events=[_req(), _req(topic="bad"), _req()]))
        bad = await call.read()
        assert bad.batch_id == 8 and not bad.sequences
        assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert bad.error.message.startswith("events[1].topic:"), bad.error.message
        # Spanning namespaces: all or none as well.
        await call.write(pb.PublishStreamRequest(
            batch_id=9, events=[_req(namespace="a"), _req(namespace="b", topic="x")]))
        bad = await call.read()
        assert bad.error.message.startswith("events[1].topic:"), bad.error.message
        await call.write(pb.PublishStreamRequest(
            batch_id=10, events=[_req(namespace="a"), _req(namespace="b"), _req()]))
        ok = await call.read()
        assert (ok.batch_id, list(ok.sequences)) == (10, [1, 1, 3])
        events = await read_events(sub, 5)
        # in order within each namespace (namespaces have no order between them)
        got = [(e.namespace, e.sequence) for _, e in events]
        assert sorted(got) == [("a", 1), ("b", 1), ("default", 1), ("default", 2),
                               ("default", 3)]
        assert [seq for ns, seq in got if ns == "default"] == [1, 2, 3]
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        sub.cancel()


async def test_stats_reports_namespaces_and_server_figures(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        sub = stub(channel).Subscribe()
        await sub.write(add("a", ("k8s.io",)))
        await read_kind(sub, "add_result")
        for _ in range(3):
            await publish(channel, "k8s.io", "/x")
        await publish(channel, "default", "/x")
        await read_events(sub, 3)
        stats = await stub(channel).Stats(pb.StatsRequest())
        assert [n.namespace for n in stats.namespaces] == ["default", "k8s.io"]
        k8s = stats.namespaces[1]
        assert (k8s.published, k8s.delivered, k8s.subscribers, k8s.head_sequence) == (3, 3, 1, 3)
        assert stats.subscriptions == 1 and stats.streams >= 1
        assert stats.uptime_seconds > 0 and stats.epoch == server.hub.epoch
        only = await stub(channel).Stats(pb.StatsRequest(namespaces=["k8s.io"]))
        assert [n.namespace for n in only.namespaces] == ["k8s.io"]
        for names, code in ((["nope"], grpc.StatusCode.NOT_FOUND),
                            (["default", "Bad!"], grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub(channel).Stats(pb.StatsRequest(namespaces=names))
            assert info.value.code() == code
            assert (info.value.details() or "").startswith(f"namespaces[{len(names) - 1}]")
        sub.cancel()


async def test_stats_reports_the_largest_lag_of_a_namespace(server: Server) -> None:
    """max_lag is what a subscription has yet to receive: here one that reads nothing."""
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        await publish(channel, "idle", "/x")
        async with server.hub.subscribe("lagging"), server.hub.subscribe("lagging"):
            for _ in range(5):
                await publish(channel, "lagging", "/x")
            stats = await stub(channel).Stats(pb.StatsRequest())
        lags = {n.namespace: n.max_lag for n in stats.namespaces}
        assert lags == {"idle": 0, "lagging": 5}
        after = await stub(channel).Stats(pb.StatsRequest(namespaces=["lagging"]))
        assert after.namespaces[0].max_lag == 0  # no subscriber left


_SPANNING = HubConfig(
    max_namespaces=4,
    namespaces={
        "small": NamespaceConfig(max_payload_bytes=100),
        "tiny": NamespaceConfig(retention=Retention(max_bytes=1000)),
        "slow": NamespaceConfig(max_publish_rate=1.0, publish_burst=2),
    },
)


@pytest.mark.parametrize(("events", "code", "message"), [
    ([_req("a"), _req("small", payload=any_pb2.Any(type_url="t" * 41, value=b"x" * 60))],
     grpc.StatusCode.RESOURCE_EXHAUSTED,
     "events[1].type_url: 41 bytes, with the payload's 60, exceed the limit of 100"),
    ([_req("a"), _req("tiny", payload=any_pb2.Any(value=b"x" * 900))],
     grpc.StatusCode.RESOURCE_EXHAUSTED, "events[1].payload: event of "),
    ([_req("a"), _req("b", labels={"": "v"})], grpc.StatusCode.INVALID_ARGUMENT,
     "events[1].labels"),
    ([_req("slow"), _req("a"), _req("slow"), _req("slow")], grpc.StatusCode.RESOURCE_EXHAUSTED,
     "events[2].namespace: namespace 'slow' is over its rate"),
    ([_req(f"n{i}") for i in range(5)], grpc.StatusCode.RESOURCE_EXHAUSTED,
     "events[4].namespace: creating 5 new namespaces would exceed the hub's maximum of 4"),
    ([_req("a"), _req("Bad!")], grpc.StatusCode.INVALID_ARGUMENT, "events[1].namespace: "),
    ([_req("a"), _req("b"), _req("b", event_id="bad id")], grpc.StatusCode.INVALID_ARGUMENT,
     "events[2].event_id: "),
], ids=["type_url-with-payload", "retention", "labels", "rate", "namespaces", "name",
        "event_id"])
async def test_a_batch_spanning_namespaces_is_checked_whole_as_the_core_would(
        make_server: Any, events: list[pb.PublishRequest], code: grpc.StatusCode,
        message: str) -> None:
    """Every check of the core's publish, on every namespace of the batch, before any of
    it is published (the edge's own copy of the checks missed the type_url limit)."""
    server = await make_server(hub=_SPANNING)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).PublishStream()
        await call.write(pb.PublishStreamRequest(batch_id=1, events=events))
        refused = await call.read()
        assert not refused.sequences
        assert (refused.error.code, refused.error.message[:len(message)]) == (
            code.value[0], message), refused.error.message
        assert server.hub.namespace_names() == []  # none of it published
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    assert server.telemetry.rejected[code.name.lower()] == 1


async def test_an_event_id_is_stored_once_by_publish_and_publish_stream(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        first = await publish(channel, "default", "/tasks/exit", event_id="exit-1")
        again = await publish(channel, "default", "/tasks/exit", event_id="exit-1")
        assert first.sequence == again.sequence == 1
        call = stub(channel).PublishStream()
        batch = [_req(event_id="exit-1"), _req(event_id="exit-2"), _req(event_id="exit-2")]
        await call.write(pb.PublishStreamRequest(batch_id=1, events=batch))
        assert list((await call.read()).sequences) == [1, 2, 2]
        # sent again after a failure: the original sequences, nothing stored twice
        await call.write(pb.PublishStreamRequest(batch_id=2, events=batch))
        assert list((await call.read()).sequences) == [1, 2, 2]
        bad = [_req(event_id="ok"), _req(event_id="bad id")]
        await call.write(pb.PublishStreamRequest(batch_id=3, events=bad))
        answer = await call.read()
        assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answer.error.message.startswith("events[1].event_id:")
        call.cancel()
        stats = await stub(channel).Stats(pb.StatsRequest(namespaces=["default"]))
        # 1 unary, 1 in the first batch (its own repeat), 3 in the second
        assert (stats.namespaces[0].head_sequence, stats.namespaces[0].deduplicated) == (2, 6)


async def test_publish_stream_refuses_a_batch_over_the_limit_and_goes_on(
        make_server: Any) -> None:
    server = await make_server(publish_batch_max_events=100)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).PublishStream()
        await call.write(pb.PublishStreamRequest(batch_id=1, events=[_req()] * 101))
        refused = await call.read()
        assert refused.batch_id == 1 and not refused.sequences
        assert refused.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert refused.error.message == (
            "events: 101 events exceed the limit of 100 per batch "
            "(publish_batch_max_events); split the batch")
        assert "default" not in server.hub.statistics().namespaces  # nothing published
        await call.write(pb.PublishStreamRequest(batch_id=2, events=[_req()] * 100))
        accepted = await call.read()
        assert accepted.batch_id == 2 and list(accepted.sequences) == list(range(1, 101))
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    assert server.telemetry.rejected["batch_too_large"] == 1


async def test_converting_a_large_batch_lets_other_tasks_run() -> None:
    events = [_req(topic=f"/t{i % 7}") for i in range(3 * 1024 + 5)]
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        while not ticks:
            await anyio.lowlevel.checkpoint()
        before = ticks
        runs = await _runs(events)
        during = ticks - before
        done = True
    assert during >= 3  # it yielded between slices of 1024 events
    [(offset, ns, items)] = runs
    assert (offset, ns, len(items)) == (0, "default", len(events))
    assert [item.topic for item in items[:8]] == [f"/t{i % 7}" for i in range(8)]


class _SlowAnswers:
    """A PublishStream's context whose writes wait until released (a busy loop's turn
    for the write's completion), recording what was written."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.written: list[pb.PublishStreamResponse] = []

    async def write(self, response: pb.PublishStreamResponse) -> None:
        await self.release.wait()
        self.written.append(response)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


async def test_publish_stream_reads_the_next_batch_while_an_answer_is_written() -> None:
    from broadcaster import Broadcaster
    from broadcaster.grpc._service import BroadcasterService
    from broadcaster.grpc._subscribe_stream import StreamLimits
    from broadcaster.grpc._telemetry import Telemetry

    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        service = BroadcasterService(hub, StreamLimits(), Telemetry())
        context = _SlowAnswers()
        sent = 0

        async def batches() -> Any:
            nonlocal sent
            for i in range(1, 4):
                sent = i
                yield pb.PublishStreamRequest(batch_id=i, events=[_req("a", f"/e{i}")])

        async with anyio.create_task_group() as tg:
            tg.start_soon(service.publish_stream, batches(), context)
            with anyio.fail_after(5):
                while hub.statistics().namespaces.get("a") is None or \
                        hub.statistics().namespaces["a"].published < 3:
                    await anyio.lowlevel.checkpoint()
            # all three published while the first answer has not been written yet
            assert sent == 3 and context.written == []
            context.release.set()
        assert [(r.batch_id, list(r.sequences)) for r in context.written] == [
            (1, [1]), (2, [2]), (3, [3])]


async def test_a_publish_stream_whose_answers_are_not_taken_is_not_read_further() -> None:
    from broadcaster import Broadcaster
    from broadcaster.grpc._service import _PIPELINE, BroadcasterService
    from broadcaster.grpc._subscribe_stream import StreamLimits
    from broadcaster.grpc._telemetry import Telemetry

    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        service = BroadcasterService(hub, StreamLimits(), Telemetry())
        context = _SlowAnswers()  # its client never reads: no write completes
        sent = 0

        async def batches() -> Any:
            nonlocal sent
            for i in range(1, 101):
                sent = i
                yield pb.PublishStreamRequest(batch_id=i, events=[_req("a")])

        async with anyio.create_task_group() as tg:
            tg.start_soon(service.publish_stream, batches(), context)
            with anyio.fail_after(5):
                while sent < _PIPELINE + 2:
                    await anyio.lowlevel.checkpoint()
            for _ in range(100):  # it stays there
                await anyio.lowlevel.checkpoint()
            # one being written, _PIPELINE waiting, and the next one read and held
            assert sent == _PIPELINE + 2
            assert hub.statistics().namespaces["a"].published == _PIPELINE + 1
            context.release.set()
        assert [r.batch_id for r in context.written] == list(range(1, 101))

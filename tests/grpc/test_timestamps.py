"""Timestamps outside protobuf's range are refused at publish on both APIs; the extremes
inside it reach subscribers of both APIs intact."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from broadcaster._proto import MAX_SECONDS, MIN_SECONDS
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, publish, read_events, read_kind, stub, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

_OUT_OF_RANGE = [
    pytest.param(MAX_SECONDS + 1, 0, "seconds 253402300800 is outside", id="after-9999"),
    pytest.param(MIN_SECONDS - 1, 0, "seconds -62135596801 is outside", id="before-0001"),
    pytest.param(10**15, 0, "seconds 1000000000000000 is outside", id="far-future"),
    pytest.param(0, 1_000_000_000, "nanos 1000000000 is outside", id="nanos-too-big"),
    pytest.param(1, -1, "nanos -1 is outside", id="nanos-negative"),
]


def _ts(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


async def _containerd_subscriber(channel: grpc.aio.Channel, server: Server) -> Any:
    before = server.hub.subscription_count
    call = events_pb2_grpc.EventsStub(channel).Subscribe(events_pb2.SubscribeRequest())
    await wait_until(lambda: server.hub.subscription_count > before)
    return call


@pytest.mark.parametrize(("seconds", "nanos", "needle"), _OUT_OF_RANGE)
async def test_v1_publish_refuses_a_timestamp_outside_protobuf_range(
        server: Server, seconds: int, nanos: int, needle: str) -> None:
    async with grpc.aio.insecure_channel(server.addresses[1]) as channel:
        ctr = await _containerd_subscriber(channel, server)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await publish(channel, "default", "/bad", timestamp=_ts(seconds, nanos))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(f"timestamp: {needle}")
        # Nothing was published or counted; the containerd subscriber gets the next event.
        assert "default" not in server.hub.statistics().namespaces
        await publish(channel, "default", "/good")
        envelope = await ctr.read()
        assert envelope.topic == "/good"
        assert server.hub.statistics().namespaces["default"].published == 1
        ctr.cancel()


@pytest.mark.parametrize(("seconds", "nanos", "needle"), _OUT_OF_RANGE)
async def test_publish_stream_refuses_the_batch_naming_the_event(
        server: Server, seconds: int, nanos: int, needle: str) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).PublishStream()
        good = pb.PublishRequest(namespace="default", topic="/ok")
        bad = pb.PublishRequest(namespace="default", topic="/bad", timestamp=_ts(seconds, nanos))
        await call.write(pb.PublishStreamRequest(batch_id=1, events=[good, bad]))
        response = await call.read()
        assert response.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert response.error.message.startswith(f"events[1].timestamp: {needle}")
        assert not response.sequences
        await call.write(pb.PublishStreamRequest(batch_id=2, events=[good]))
        assert list((await call.read()).sequences) == [1]
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(("seconds", "nanos", "needle"), _OUT_OF_RANGE)
async def test_containerd_forward_refuses_a_timestamp_outside_protobuf_range(
        server: Server, seconds: int, nanos: int, needle: str) -> None:
    async with grpc.aio.insecure_channel(server.addresses[1]) as channel:
        envelope = events_pb2.Envelope(namespace="default", topic="/bad",
                                       timestamp=_ts(seconds, nanos))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await events_pb2_grpc.EventsStub(channel).Forward(
                events_pb2.ForwardRequest(envelope=envelope))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(f"envelope.timestamp: {needle}")
        assert "default" not in server.hub.statistics().namespaces


@pytest.mark.parametrize(("seconds", "nanos"), [
    (MAX_SECONDS, 999_999_999),   # 9999-12-31T23:59:59.999999999Z
    (MIN_SECONDS, 1),             # 0001-01-01T00:00:00.000000001Z
    (-1, 5),                      # just before the Unix epoch
])
async def test_extreme_timestamps_reach_both_apis_intact(
        server: Server, seconds: int, nanos: int) -> None:
    async with grpc.aio.insecure_channel(server.addresses[1]) as channel:
        v1 = stub(channel).Subscribe()
        await v1.write(add("s", ("default",)))
        assert (await read_kind(v1, "add_result")).ok
        ctr = await _containerd_subscriber(channel, server)
        await publish(channel, "default", "/v1", timestamp=_ts(seconds, nanos))
        await events_pb2_grpc.EventsStub(channel).Forward(events_pb2.ForwardRequest(
            envelope=events_pb2.Envelope(namespace="default", topic="/fwd",
                                         timestamp=_ts(seconds, nanos))))
        got = [event for _, event in await read_events(v1, 2)]
        assert [(e.topic, e.timestamp) for e in got] == [
            ("/v1", _ts(seconds, nanos)), ("/fwd", _ts(seconds, nanos))]
        for topic in ("/v1", "/fwd"):
            envelope = await ctr.read()
            assert (envelope.topic, envelope.timestamp) == (topic, _ts(seconds, nanos))
        v1.cancel()
        ctr.cancel()

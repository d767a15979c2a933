"""Bytes that are not a valid request message, on every method the server serves, are
answered INVALID_ARGUMENT naming the method; failed RPCs are logged at a bounded rate."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import grpc
import pytest

from broadcaster.grpc import Server
from broadcaster.grpc._ratelog import RateLimitedLog
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, publish, read_kind, stub, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

#: A truncated varint: no message type can parse it (not even Empty).
GARBAGE = b"\xff\xff\xff\xff"
#: ... a length-delimited field longer than the message, an end-group tag without a start
GARBAGES = [GARBAGE, b"\x0a\x05ab", b"\x0c"]

UNARY = [
    "/broadcaster.v1.Broadcaster/Publish",
    "/broadcaster.v1.Broadcaster/Stats",
    "/containerd.services.events.v1.Events/Publish",
    "/containerd.services.events.v1.Events/Forward",
    "/containerd.services.introspection.v1.Introspection/Server",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
]
SERVER_STREAMING = [
    "/containerd.services.events.v1.Events/Subscribe",
    "/grpc.health.v1.Health/Watch",
]
BIDI = [
    "/broadcaster.v1.Broadcaster/PublishStream",
    "/broadcaster.v1.Broadcaster/Subscribe",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]


def _identity(data: bytes) -> bytes:
    return data


def _check(error: grpc.aio.AioRpcError | grpc.StatusCode, details: str, method: str) -> None:
    code = error if isinstance(error, grpc.StatusCode) else error.code()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(f"{method}: the request message could not be parsed"), details
    assert "Traceback" not in details and "Unexpected" not in details


async def _raw_call(channel: grpc.aio.Channel, method: str, data: bytes) -> tuple[Any, str]:
    """Send *data* as the (first) request message of *method*; return (code, details)."""
    with anyio.fail_after(10):
        if method in UNARY:
            call = channel.unary_unary(method, request_serializer=_identity,
                                       response_deserializer=_identity)
            try:
                await call(data)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""
        if method in SERVER_STREAMING:
            stream = channel.unary_stream(method, request_serializer=_identity,
                                          response_deserializer=_identity)(data)
        else:
            stream = channel.stream_stream(method, request_serializer=_identity,
                                           response_deserializer=_identity)()
            await stream.write(data)
        return await stream.code(), await stream.details()


async def test_the_lists_cover_every_method_served(server: Server) -> None:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from broadcaster.containerd.services.events.v1 import events_pb2
    from broadcaster.containerd.services.introspection.v1 import introspection_pb2

    served = set()
    for module, name in ((pb, "Broadcaster"), (events_pb2, "Events"),
                         (introspection_pb2, "Introspection"), (health_pb2, "Health"),
                         (reflection_pb2, "ServerReflection")):
        service = module.DESCRIPTOR.services_by_name[name]
        assert service.full_name in server.service_names
        served |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert served == set(UNARY + SERVER_STREAMING + BIDI)


@pytest.mark.parametrize("method", UNARY + SERVER_STREAMING + BIDI)
async def test_garbage_is_invalid_argument_naming_the_method(server: Server, method: str) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        for data in GARBAGES:
            code, details = await _raw_call(channel, method, data)
            _check(code, details, method)
        # The server goes on: the same connection publishes and answers.
        assert (await publish(channel, "default", "/after")).sequence == 1
    await wait_until(lambda: not server.telemetry.open_streams)
    assert server.telemetry.requests[(method, "INVALID_ARGUMENT")] == len(GARBAGES)
    assert server.telemetry.rejected["malformed_request"] == len(GARBAGES)
    assert server.hub.subscription_count == 0


async def test_garbage_after_valid_messages_ends_the_stream_and_its_subscriptions(
        server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        method = "/broadcaster.v1.Broadcaster/Subscribe"
        call = channel.stream_stream(method, request_serializer=_identity,
                                     response_deserializer=pb.SubscribeResponse.FromString)()
        await call.write(add("s", ("default",)).SerializeToString())
        assert (await read_kind(call, "add_result")).ok
        assert server.hub.subscription_count == 1
        await call.write(GARBAGE)
        with anyio.fail_after(10):
            code, details = await call.code(), await call.details()
        _check(code, details, method)
        assert server.hub.subscription_count == 0
        # PublishStream: the batches before the garbage were published.
        publish_stream = stub(channel).PublishStream
        raw = channel.stream_stream("/broadcaster.v1.Broadcaster/PublishStream",
                                    request_serializer=_identity,
                                    response_deserializer=pb.PublishStreamResponse.FromString)()
        await raw.write(pb.PublishStreamRequest(batch_id=1, events=[
            pb.PublishRequest(namespace="default", topic="/ok")]).SerializeToString())
        assert list((await raw.read()).sequences) == [1]
        await raw.write(GARBAGE)
        with anyio.fail_after(10):
            _check(await raw.code(), await raw.details(),
                   "/broadcaster.v1.Broadcaster/PublishStream")
        assert publish_stream is not None
    await wait_until(lambda: not server.telemetry.open_streams)


async def test_failed_rpcs_are_logged_once_per_method_and_code_per_interval(
        make_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = await make_server(rpc_error_log_interval=3600.0)
    caplog.set_level(logging.INFO, logger="broadcaster.grpc.access")
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        for _ in range(50):
            code, _ = await _raw_call(channel, UNARY[0], GARBAGE)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError):
                await publish(channel, "bad name", "/x")
    lines = [r.getMessage() for r in caplog.records if r.name == "broadcaster.grpc.access"]
    assert lines == [f"rpc failed method={UNARY[0]} code=INVALID_ARGUMENT"]
    # a call is counted as its handler returns, which may be after the client has its
    # status: the last one may still be on its way
    key = (UNARY[0], "INVALID_ARGUMENT")
    await wait_until(lambda: server.telemetry.requests[key] >= 100)
    assert server.telemetry.requests[key] == 100


async def test_rate_limited_log_counts_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, clock=lambda: now[0],
                         max_keys=2)
    caplog.set_level(logging.INFO, logger="test.ratelog")
    assert log.log(logging.INFO, "a", "line %s", "a")
    for _ in range(5):
        assert not log.log(logging.INFO, "a", "line %s", "a")
    assert log.log(logging.INFO, "b", "line %s", "b")  # other keys are independent
    now[0] = 9.9
    assert not log.log(logging.INFO, "a", "line %s", "a")
    now[0] = 10.0
    assert log.log(logging.INFO, "a", "line %s", "a")
    assert log.log(logging.INFO, "c", "line %s", "c")  # forgets b (least recent)
    assert log.log(logging.INFO, "b", "line %s", "b")
    assert [r.getMessage() for r in caplog.records] == [
        "line a", "line b", "line a suppressed=6", "line c", "line b"]
    assert not log.log(logging.DEBUG, "d", "not enabled")

"""Fuzzing every request of both APIs against a live server over a real connection.

Each example sends generated, mutated or garbage request bytes to one method (for the
streaming ones, a sequence of them with events published meanwhile) and checks what
matters to everyone else:

* the call ends within a bound (no hung stream) with a status code documented for that
  method, and never with a message leaking internals;
* afterwards every gauge is back to 0 (open streams, subscriptions) and the server still
  answers Health and publishes.

``make test`` runs a few dozen examples per test; ``make fuzz`` runs many more
(``BROADCASTER_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster import HubConfig, NamespaceConfig, Policy, Retention
from broadcaster.containerd.services.events.v1 import events_pb2
from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import publish, wait_until
from ._protostrategies import NAMES, STRINGS, messages, wire

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

EXAMPLES = int(os.environ.get("BROADCASTER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="BROADCASTER_FUZZ_EXAMPLES"
                not in os.environ, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])
#: Bound of every wait on the server: a call not finished by then is a hung stream.
BOUND = 10.0

C = grpc.StatusCode
#: Status codes each method may answer (README, "Bad input"); anything else fails.
UNARY: dict[str, tuple[Any, frozenset[C]]] = {
    "/broadcaster.v1.Broadcaster/Publish": (
        pb.PublishRequest, frozenset({C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED})),
    "/broadcaster.v1.Broadcaster/Stats": (
        pb.StatsRequest, frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND})),
    "/containerd.services.events.v1.Events/Publish": (
        events_pb2.PublishRequest,
        frozenset({C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED})),
    "/containerd.services.events.v1.Events/Forward": (
        events_pb2.ForwardRequest,
        frozenset({C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED})),
    "/containerd.services.introspection.v1.Introspection/Server": (
        pb.StatsRequest, frozenset({C.OK, C.INVALID_ARGUMENT})),  # (Empty: any bytes)
    "/grpc.health.v1.Health/Check": (
        health_pb2.HealthCheckRequest, frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND})),
    "/grpc.health.v1.Health/List": (
        health_pb2.HealthListRequest, frozenset({C.OK, C.INVALID_ARGUMENT})),
}
ADD_RESULT_CODES = frozenset({C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED,
                              C.ALREADY_EXISTS, C.FAILED_PRECONDITION})
STREAM_END_CODES = frozenset({C.OK, C.INVALID_ARGUMENT, C.CANCELLED})
LEAKS = ("Traceback", "Unexpected <class", "Exception", "Error parsing message with type")


def _identity(data: bytes) -> bytes:
    return data


def _check_details(details: str | None) -> None:
    text = details or ""
    for leak in LEAKS:
        # the parse error is quoted after the method name, which is fine; a bare
        # internal exception is not
        if leak in text and "could not be parsed" not in text:
            raise AssertionError(f"internal detail leaked: {text!r}")


@pytest.fixture
async def fuzz_server(make_server: Any) -> Server:
    # Small bounds so that limits are reached by the fuzzer too.
    hub = HubConfig(
        heartbeat_interval=0.25, max_missed_heartbeats=40, overflow_check_interval=0.02,
        default_namespace=NamespaceConfig(max_payload_bytes=32, max_policy_events=64,
                                          retention=Retention(max_events=64),
                                          default_policy=Policy.drop_oldest(16)),
    )
    return await make_server(hub=hub, max_subscriptions_per_stream=4,
                             publish_batch_max_events=8)  # type: ignore[no-any-return]


async def _settled(server: Server) -> None:
    """Every gauge back to 0, and the server still serves."""
    await wait_until(lambda: not server.telemetry.open_streams
                     and server.hub.subscription_count == 0, within=BOUND)
    async with grpc.aio.insecure_channel(server.addresses[1]) as channel:
        with anyio.fail_after(BOUND):
            await publish(channel, "probe", "/alive")


def _metadata(namespace: str | None) -> tuple[tuple[str, str], ...]:
    return () if namespace is None else (("containerd-namespace", namespace),)


# Everything is drawn before the test's coroutine runs: hypothesis stops an example by
# raising a BaseException from a draw, which must not cross the event loop's runner.
_UNARY_CASES = st.sampled_from(sorted(UNARY)).flatmap(
    lambda method: st.tuples(st.just(method), wire(UNARY[method][0])))
_METADATA_NAMESPACES = st.one_of(st.none(), st.sampled_from(  # what HTTP/2 headers carry
    [n for n in NAMES if n.isascii() and n.isprintable()]), st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))


@FUZZ
@given(case=_UNARY_CASES, namespace=_METADATA_NAMESPACES)
async def test_fuzz_unary(fuzz_server: Server, case: tuple[str, bytes],
                          namespace: str | None) -> None:
    method, request = case
    codes = UNARY[method][1]
    async with grpc.aio.insecure_channel(fuzz_server.addresses[0]) as channel:
        call = channel.unary_unary(method, request_serializer=_identity,
                                   response_deserializer=_identity)
        with anyio.fail_after(BOUND):
            try:
                await call(request, metadata=_metadata(namespace))
                code, details = C.OK, None
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details()
    assert code in codes, (code, details)
    _check_details(details)
    await _settled(fuzz_server)


_SUBSCRIBE_STEP = st.one_of(
    wire(pb.SubscribeRequest).map(lambda b: ("send", b)),
    messages(pb.SubscribeRequest.Add).map(
        lambda add: ("send", pb.SubscribeRequest(add=add).SerializeToString())),
    st.tuples(st.just("publish"), st.sampled_from(["default", "a", "k8s.io"]),
              st.sampled_from(["/t", "/tasks/exit"])),
)


@FUZZ
@given(steps=st.lists(_SUBSCRIBE_STEP, min_size=1, max_size=8), half_close=st.booleans())
async def test_fuzz_v1_subscribe(fuzz_server: Server, steps: list[tuple[Any, ...]],
                                 half_close: bool) -> None:
    tcp, unix = fuzz_server.addresses
    async with grpc.aio.insecure_channel(tcp) as channel, \
            grpc.aio.insecure_channel(unix) as publisher:
        call = channel.stream_stream("/broadcaster.v1.Broadcaster/Subscribe",
                                     request_serializer=_identity,
                                     response_deserializer=pb.SubscribeResponse.FromString)()
        responses: list[pb.SubscribeResponse] = []

        async def read_all() -> None:
            try:
                while (response := await call.read()) is not grpc.aio.EOF:
                    responses.append(response)
            except grpc.aio.AioRpcError:
                pass  # the status is checked below

        garbage = False
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                for step in steps:
                    if call.done():
                        break
                    if step[0] == "send":
                        garbage = not _parses(pb.SubscribeRequest, step[1])
                        try:
                            await call.write(step[1])
                        except grpc.aio.AioRpcError:
                            break
                        if garbage:
                            break  # the server must end the stream: nothing more to send
                    else:
                        await publisher.unary_unary(
                            "/broadcaster.v1.Broadcaster/Publish",
                            request_serializer=pb.PublishRequest.SerializeToString,
                            response_deserializer=pb.PublishResponse.FromString,
                        )(pb.PublishRequest(namespace=step[1], topic=step[2]))
                if not garbage and not call.done():
                    # A Remove is always answered: once its Removed arrives, every
                    # request before it was handled.
                    await call.write(pb.SubscribeRequest(remove=pb.SubscribeRequest.Remove(
                        subscription_id="\x00end")).SerializeToString())
                    await wait_until(lambda: call.done() or any(
                        r.WhichOneof("kind") == "removed"
                        and r.removed.subscription_id == "\x00end" for r in responses),
                        within=BOUND)
                    if half_close and not call.done():
                        await call.done_writing()
                    call.cancel()  # live subscriptions keep a stream open: the client leaves
            code = await call.code()
    if garbage:
        assert code == C.INVALID_ARGUMENT, (code, await call.details())
    assert code in STREAM_END_CODES, (code, await call.details())
    _check_details(await call.details())
    for response in responses:
        if response.WhichOneof("kind") == "add_result" and not response.add_result.ok:
            error = response.add_result.error
            assert C(_code(error.code)) in ADD_RESULT_CODES, response
            assert error.message.split(":")[0], response
            _check_details(error.message)
    await _settled(fuzz_server)


def _parses(cls: Any, data: bytes) -> bool:
    try:
        cls.FromString(data)
    except Exception:
        return False
    return True


def _code(value: int) -> tuple[int, str]:
    return next(c.value for c in C if c.value[0] == value)


_BATCH = st.lists(messages(pb.PublishRequest), max_size=10).map(
    lambda events: pb.PublishStreamRequest(batch_id=len(events), events=events))


@FUZZ
@given(batches=st.lists(st.one_of(_BATCH.map(lambda b: b.SerializeToString()),
                                  wire(pb.PublishStreamRequest)), min_size=1, max_size=5))
async def test_fuzz_publish_stream(fuzz_server: Server, batches: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(fuzz_server.addresses[0]) as channel:
        call = channel.stream_stream("/broadcaster.v1.Broadcaster/PublishStream",
                                     request_serializer=_identity,
                                     response_deserializer=pb.PublishStreamResponse.FromString)()
        answered = 0
        with anyio.fail_after(BOUND):
            for batch in batches:
                try:
                    await call.write(batch)
                    response = await call.read()
                except grpc.aio.AioRpcError:
                    break
                if response is grpc.aio.EOF:
                    break
                answered += 1
                if response.HasField("error"):
                    assert C(_code(response.error.code)) in {
                        C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED}, response
                    assert not response.sequences
                    _check_details(response.error.message)
            if not call.done():
                await call.done_writing()
            code = await call.code()
    assert code in {C.OK, C.INVALID_ARGUMENT}, (code, await call.details())
    assert code == C.INVALID_ARGUMENT or answered == len(batches)
    _check_details(await call.details())
    await _settled(fuzz_server)


@FUZZ
@given(request=wire(events_pb2.SubscribeRequest),
       filters=st.lists(STRINGS, max_size=3),
       use_filters=st.booleans())
async def test_fuzz_containerd_subscribe(fuzz_server: Server, request: bytes,
                                         filters: list[str], use_filters: bool) -> None:
    if use_filters:
        request = events_pb2.SubscribeRequest(filters=filters).SerializeToString()
    before = fuzz_server.hub.subscription_count
    async with grpc.aio.insecure_channel(fuzz_server.addresses[0]) as channel:
        call = channel.unary_stream("/containerd.services.events.v1.Events/Subscribe",
                                    request_serializer=_identity,
                                    response_deserializer=events_pb2.Envelope.FromString)(request)
        with anyio.fail_after(BOUND):
            await wait_until(lambda: call.done()
                             or fuzz_server.hub.subscription_count > before, within=BOUND)
            if not call.done():
                async with grpc.aio.insecure_channel(fuzz_server.addresses[1]) as publisher:
                    await publish(publisher, "default", "/t")
                call.cancel()
            code = await call.code()
    assert code in {C.INVALID_ARGUMENT, C.CANCELLED}, (code, await call.details())
    _check_details(await call.details())
    await _settled(fuzz_server)


_STREAMED = {
    "/grpc.health.v1.Health/Watch": health_pb2.HealthCheckRequest,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo":
        reflection_pb2.ServerReflectionRequest,
}


@FUZZ
@given(case=st.sampled_from(sorted(_STREAMED)).flatmap(
    lambda method: st.tuples(st.just(method), wire(_STREAMED[method]))))
async def test_fuzz_health_watch_and_reflection(fuzz_server: Server,
                                                case: tuple[str, bytes]) -> None:
    method, request = case
    async with grpc.aio.insecure_channel(fuzz_server.addresses[0]) as channel:
        with anyio.fail_after(BOUND):
            if "Watch" in method:
                call = channel.unary_stream(method, request_serializer=_identity,
                                            response_deserializer=_identity)(request)
            else:
                call = channel.stream_stream(method, request_serializer=_identity,
                                             response_deserializer=_identity)()
                await call.write(request)
                await call.done_writing()
            try:
                response = await call.read()  # one answer (or the end), then leave
            except grpc.aio.AioRpcError:
                response = None  # the status is checked below
            call.cancel()
            code = await call.code()
    assert code in STREAM_END_CODES, (code, response, await call.details())
    _check_details(await call.details())
    await _settled(fuzz_server)

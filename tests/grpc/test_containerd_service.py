"""containerd's Events and Introspection services over real gRPC (unix socket), with the
generated Python stubs as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from broadcaster import (
    Broadcaster,
    Event,
    HubConfig,
    NamespaceConfig,
    Policy,
)
from broadcaster.containerd.events import task_pb2
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.containerd.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from broadcaster.grpc._containerd import add_containerd_services
from broadcaster.grpc._envelope import EnvelopeEncoder
from broadcaster.grpc._event_cache import ENTRY_OVERHEAD
from tests.interop.harness import (
    bare_containerd_server,
    containerd_server,
    socket_path,
    wait_until,
)

from .._loops import ASYNCIO

pytestmark = pytest.mark.anyio

TASK_EXIT = "containerd.events.TaskExit"
EnvelopeCall = grpc.aio.UnaryStreamCall[events_pb2.SubscribeRequest, events_pb2.Envelope]
EXIT = task_pb2.TaskExit(
    container_id="c1", id="c1", pid=42, exit_status=137,
    exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_001, nanos=5),
).SerializeToString()


@pytest.fixture
def anyio_backend() -> object:
    return ASYNCIO


class Client:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.events = events_pb2_grpc.EventsStub(channel)
        self.intro = introspection_pb2_grpc.IntrospectionStub(channel)

    async def publish(self, ns: str | None, topic: str, any_: any_pb2.Any | None = None) -> None:
        metadata = () if ns is None else (("containerd-namespace", ns),)
        request = events_pb2.PublishRequest(topic=topic)
        if any_ is not None:
            request.event.CopyFrom(any_)
        await self.events.Publish(request, metadata=metadata, timeout=10)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Broadcaster, Client]]:
    path = socket_path(tmp_path)
    config = HubConfig(namespaces={"tiny": NamespaceConfig(max_payload_bytes=8)})
    async with containerd_server(path, config) as hub:
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            yield hub, Client(channel)


def _details(err: grpc.aio.AioRpcError) -> str:
    return err.details() or ""


async def _code_of(awaitable: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable  # type: ignore[misc]
    return info.value


# -- Publish --------------------------------------------------------------------------


async def test_publish_stores_the_any_byte_for_byte(served: tuple[Broadcaster, Client]) -> None:
    hub, client = served
    async with hub.subscribe(None) as sub:
        await client.publish("ns1", "/tasks/exit", any_pb2.Any(type_url=TASK_EXIT, value=EXIT))
        prefixed = any_pb2.Any(type_url="type.googleapis.com/" + TASK_EXIT, value=b"\x00\xff")
        await client.publish("ns2", "/x/y", prefixed)
        with anyio.fail_after(5):
            got = [await sub.receive(), await sub.receive()]
    assert sorted((e.namespace, e.topic, e.type_url, e.payload) for e in got) == [  # type: ignore[union-attr]
        ("ns1", "/tasks/exit", TASK_EXIT, EXIT),
        ("ns2", "/x/y", "type.googleapis.com/" + TASK_EXIT, b"\x00\xff"),
    ]
    assert all(isinstance(e, Event) and e.timestamp_ns > 0 for e in got)


@pytest.mark.parametrize("ns", [None, ""])
async def test_publish_requires_the_namespace_metadata(
    served: tuple[Broadcaster, Client], ns: str | None
) -> None:
    hub, client = served
    err = await _code_of(client.publish(ns, "/tasks/exit"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err).startswith("containerd-namespace: namespace is required")
    assert hub.namespace_names() == []


async def test_publish_rejects_a_bad_namespace(served: tuple[Broadcaster, Client]) -> None:
    _, client = served
    err = await _code_of(client.publish("bad ns!", "/tasks/exit"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err).startswith("containerd-namespace: 'bad ns!'")


@pytest.mark.parametrize("topic", ["", "tasks/exit", "/tasks//exit", "/bad topic"])
async def test_publish_rejects_a_bad_topic(
    served: tuple[Broadcaster, Client], topic: str
) -> None:
    _, client = served
    err = await _code_of(client.publish("ns1", topic))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err).startswith("topic: ")


async def test_publish_too_large_names_the_event(served: tuple[Broadcaster, Client]) -> None:
    _, client = served
    err = await _code_of(client.publish("tiny", "/t", any_pb2.Any(type_url="x", value=b"9" * 9)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _details(err).startswith("event: 9 bytes exceed the limit of 8")


async def test_publish_names_the_type_url_in_containerds_terms(
        served: tuple[Broadcaster, Client]) -> None:
    _, client = served
    payload = any_pb2.Any(type_url="x" * 5, value=b"9" * 4)
    err = await _code_of(client.publish("tiny", "/t", payload))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _details(err).startswith("event.type_url: 5 bytes, with the payload's 4, exceed")


async def test_refused_calls_are_counted_as_the_v1_api_counts_them(make_server: Any) -> None:
    server = await make_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        client = Client(channel)
        await _code_of(client.publish(None, "/x"))
        await _code_of(client.publish("a", "bad-topic"))
        await _code_of(client.events.Subscribe(
            events_pb2.SubscribeRequest(filters=["nope=="])).read())
        await _code_of(client.events.Forward(events_pb2.ForwardRequest(), timeout=10))
    assert server.telemetry.rejected == {"invalid_argument": 4}


# -- Forward ----------------------------------------------------------------------------


def _envelope(ns: str = "ns1", topic: str = "/tasks/exit", seconds: int | None = 1_600_000_000,
              nanos: int = 7) -> events_pb2.Envelope:
    env = events_pb2.Envelope(namespace=ns, topic=topic,
                              event=any_pb2.Any(type_url=TASK_EXIT, value=EXIT))
    if seconds is not None:
        env.timestamp.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    return env


async def test_forward_keeps_namespace_and_timestamp(served: tuple[Broadcaster, Client]) -> None:
    hub, client = served
    async with hub.subscribe(None) as sub:
        reply = await client.events.Forward(
            events_pb2.ForwardRequest(envelope=_envelope()), timeout=10,
            metadata=(("containerd-namespace", "other"),),
        )
        with anyio.fail_after(5):
            event = await sub.receive()
    assert reply == empty_pb2.Empty()
    assert isinstance(event, Event)
    assert (event.namespace, event.topic, event.type_url, event.payload) == (
        "ns1", "/tasks/exit", TASK_EXIT, EXIT)
    assert event.timestamp_ns == 1_600_000_000 * 10**9 + 7


@pytest.mark.parametrize(
    ("envelope", "prefix"),
    [
        (None, "envelope: is required"),
        (_envelope(seconds=None), "envelope.timestamp: must be set"),
        (_envelope(seconds=-62_135_596_800, nanos=0), "envelope.timestamp: must be set"),
        (_envelope(seconds=10**12), "envelope.timestamp: "),
        (_envelope(ns=""), "envelope.namespace: must not be empty"),
        (_envelope(topic="nope"), "envelope.topic: 'nope' must start with '/'"),
    ],
)
async def test_forward_rejects_bad_envelopes(
    served: tuple[Broadcaster, Client], envelope: events_pb2.Envelope | None, prefix: str
) -> None:
    hub, client = served
    request = events_pb2.ForwardRequest()
    if envelope is not None:
        request.envelope.CopyFrom(envelope)
    err = await _code_of(client.events.Forward(request, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err).startswith(prefix), _details(err)
    assert hub.namespace_names() == []


# -- Subscribe ---------------------------------------------------------------------------


async def _subscribe(
    hub: Broadcaster, client: Client, *filters: str, ns_metadata: str = "default"
) -> EnvelopeCall:
    before = hub.subscription_count
    call = client.events.Subscribe(
        events_pb2.SubscribeRequest(filters=filters),
        metadata=(("containerd-namespace", ns_metadata),),
    )
    await wait_until(lambda: hub.subscription_count > before or call.done(), what="subscribed")
    return call


async def _read(call: EnvelopeCall, n: int) -> list[events_pb2.Envelope]:
    out = []
    with anyio.fail_after(10):
        for _ in range(n):
            envelope = await call.read()
            assert isinstance(envelope, events_pb2.Envelope), envelope
            out.append(envelope)
    return out


async def test_subscribe_sees_every_namespace_as_envelopes(
    served: tuple[Broadcaster, Client],
) -> None:
    hub, client = served
    call = await _subscribe(hub, client, ns_metadata="ignored")
    ts = 1_700_000_000 * 10**9 + 5
    await hub.publish("a", "/tasks/exit", EXIT, type_url=TASK_EXIT, timestamp_ns=ts)
    await hub.publish("b", "/tasks/exit", EXIT, type_url="type.googleapis.com/" + TASK_EXIT)
    await hub.publish("a", "/x", b"\x01", type_url="type.googleapis.com/example.Thing")
    await hub.publish("b", "/bare")
    envs = await _read(call, 4)
    call.cancel()
    # order is kept within a namespace (not across namespaces)
    by_ns = {ns: [e for e in envs if e.namespace == ns] for ns in ("a", "b")}
    assert [(e.topic, e.event.type_url, e.event.value) for e in by_ns["a"]] == [
        ("/tasks/exit", TASK_EXIT, EXIT),
        ("/x", "type.googleapis.com/example.Thing", b"\x01"),
    ]
    assert [(e.topic, e.event.type_url, e.event.value) for e in by_ns["b"]] == [
        ("/tasks/exit", TASK_EXIT, EXIT),  # prefix stripped for containerd types
        ("/bare", "", b""),
    ]
    assert not by_ns["b"][1].HasField("event")
    first = by_ns["a"][0].timestamp
    assert (first.seconds, first.nanos) == (1_700_000_000, 5)
    assert all(e.HasField("timestamp") for e in envs)


async def test_subscribe_applies_filters_server_side(served: tuple[Broadcaster, Client]) -> None:
    hub, client = served
    call = await _subscribe(hub, client, 'topic=="/tasks/exit"', "namespace==b")
    await hub.publish("a", "/tasks/oom")  # no filter matches
    await hub.publish("a", "/tasks/exit")  # first filter
    await hub.publish("b", "/tasks/oom")  # second filter
    await hub.publish("a", "/last")
    await hub.publish("b", "/last")
    envs = await _read(call, 3)
    call.cancel()
    assert sorted((e.namespace, e.topic) for e in envs) == [
        ("a", "/tasks/exit"), ("b", "/last"), ("b", "/tasks/oom")]
    assert [e.topic for e in envs if e.namespace == "b"] == ["/tasks/oom", "/last"]


async def test_a_subscriber_filtering_by_namespace_reads_only_those_namespaces(
    served: tuple[Broadcaster, Client],
) -> None:
    # `ctr events namespace==b`: the stream reads namespace b alone (one cursor there, in
    # none of the others, even one created after it subscribed), so a flood elsewhere
    # costs it no read and no wake-up
    hub, client = served
    await hub.publish("a", "/x")
    call = await _subscribe(hub, client, 'namespace==b,topic=="/tasks/exit"', "namespace==c")
    for i in range(200):
        await hub.publish("a", f"/flood/{i}")
    await client.publish("b", "/tasks/exit")
    await client.publish("c", "/anything")
    envs = await _read(call, 2)
    stats = {name: ns.subscribers for name, ns in hub.statistics().namespaces.items()}
    call.cancel()
    assert sorted((e.namespace, e.topic) for e in envs) == [("b", "/tasks/exit"),
                                                             ("c", "/anything")]
    assert stats == {"a": 0, "b": 1, "c": 1}
    await wait_until(lambda: hub.subscription_count == 0, what="unsubscribed")


async def test_subscribe_rejects_a_bad_filter(served: tuple[Broadcaster, Client]) -> None:
    hub, client = served
    call = client.events.Subscribe(events_pb2.SubscribeRequest(filters=["topic", "nope=="]))
    err = await _code_of(call.read())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err).startswith("filters[1]: ")
    assert hub.subscription_count == 0


async def test_client_going_away_closes_the_subscription(
    served: tuple[Broadcaster, Client],
) -> None:
    hub, client = served
    calls = [await _subscribe(hub, client) for _ in range(3)]
    assert hub.subscription_count == 3
    calls[1].cancel()
    await wait_until(lambda: hub.subscription_count == 2, what="one closed")
    await hub.publish("a", "/after")
    for call in (calls[0], calls[2]):
        assert [e.topic for e in await _read(call, 1)] == ["/after"]
        call.cancel()
    await wait_until(lambda: hub.subscription_count == 0, what="all closed")


async def test_hub_closing_ends_streams_with_unavailable(
    served: tuple[Broadcaster, Client],
) -> None:
    hub, client = served
    call = await _subscribe(hub, client)
    await hub.publish("a", "/before")
    hub.close()
    assert [e.topic for e in await _read(call, 1)] == ["/before"]
    err = await _code_of(call.read())
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in _details(err)
    err = await _code_of(client.publish("a", "/late"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_event_outside_go_time_range_is_skipped(served: tuple[Broadcaster, Client]) -> None:
    hub, client = served
    call = await _subscribe(hub, client)
    await hub.publish("a", "/future", timestamp_ns=300_000_000_000 * 10**9)
    await hub.publish("a", "/now")
    assert [e.topic for e in await _read(call, 1)] == ["/now"]
    call.cancel()


async def test_slow_subscriber_loses_oldest_and_others_unaffected(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    n, size = 2000, 2048  # 4 MB: far more than HTTP/2 windows and the bound together
    async with bare_containerd_server(path, policy=Policy.drop_oldest(16)) as hub:
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            client = Client(channel)
            call = await _subscribe(hub, client)
            async with hub.subscribe("a", policy=Policy.drop_newest(n)) as fast:
                for i in range(n):
                    await hub.publish("a", "/e", i.to_bytes(4, "big") * (size // 4))
                with anyio.fail_after(20):
                    seen: list[int] = []
                    while not seen or seen[-1] != n - 1:
                        [env] = await _read(call, 1)
                        seen.append(int.from_bytes(env.event.value[:4], "big"))
                fast_items = [await fast.receive() for _ in range(n)]
            call.cancel()
    assert len(seen) < n  # the slow stream lost events...
    assert seen == sorted(seen)  # ...the oldest ones, in order
    assert len(fast_items) == n and all(isinstance(e, Event) for e in fast_items)
    dropped = hub.statistics().namespaces["a"].dropped
    assert sum(dropped.values()) >= n - len(seen)


def test_envelopes_are_serialized_once_for_all_streams() -> None:
    charged: list[int] = []
    unsendable: list[Event] = []
    envelopes = EnvelopeEncoder(lambda event, size: charged.append(size), unsendable.append)
    event = Event("a", "/t", EXIT, TASK_EXIT, {}, 1_700_000_000 * 10**9, 1, 0.0, 0)
    first = envelopes.envelope(event)
    assert first is not None and envelopes.envelope(event) is first
    env = events_pb2.Envelope.FromString(first)
    assert (env.namespace, env.topic, env.event.type_url, env.event.value) == (
        "a", "/t", TASK_EXIT, EXIT)
    assert charged == [len(first) + ENTRY_OVERHEAD]  # counted once, with the event
    future = Event("a", "/t", b"", "", {}, 300_000_000_000 * 10**9, 2, 0.0, 0)
    assert envelopes.envelope(future) is None and envelopes.envelope(future) is None
    assert unsendable == [future]  # reported once


# -- Introspection and registration -------------------------------------------------------


async def test_introspection_answers_a_stable_uuid_without_deprecations(
    served: tuple[Broadcaster, Client],
) -> None:
    hub, client = served
    first = await client.intro.Server(empty_pb2.Empty(), timeout=10)
    second = await client.intro.Server(empty_pb2.Empty(), timeout=10)
    assert isinstance(first, introspection_pb2.ServerResponse)
    assert first.uuid == second.uuid == hub.epoch
    assert list(first.deprecations) == []


async def test_add_containerd_services_returns_the_service_names() -> None:
    async with Broadcaster(HubConfig()) as hub:
        server = grpc.aio.server()
        names = add_containerd_services(server, hub)
        await server.stop(None)
    assert names == [
        "containerd.services.events.v1.Events",
        "containerd.services.introspection.v1.Introspection",
    ]

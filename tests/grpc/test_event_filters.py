"""``event.<field>`` selectors and filter bounds over real gRPC, on both APIs:
broadcaster.v1 Subscribe and containerd's Events.Subscribe."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import grpc
import pytest
from google.protobuf import any_pb2

from broadcaster.containerd.events import task_pb2
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.grpc import Server
from tests.interop.harness import containerd_server, socket_path, wait_until

from ._helpers import add, publish, read_events, read_kind, stub

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

TASK_EXIT = "containerd.events.TaskExit"


def exit_any(container_id: str) -> any_pb2.Any:
    return any_pb2.Any(type_url=TASK_EXIT, value=task_pb2.TaskExit(
        container_id=container_id, id=container_id, pid=1).SerializeToString())


async def test_v1_subscribe_selects_on_payload_fields(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("c2", ("k8s.io",),
                             filters=['topic=="/tasks/exit",event.container_id==c2']))
        await call.write(add("json", ("k8s.io",), filters=["event.spec.name==web"]))
        await call.write(add("not-c1", ("k8s.io",),
                             filters=['topic=="/tasks/exit",event.id!=c1']))
        for _ in range(3):
            assert (await read_kind(call, "add_result")).ok
        for cid in ("c1", "c2", "c3"):
            await publish(channel, "k8s.io", "/tasks/start", payload=exit_any(cid))
            await publish(channel, "k8s.io", "/tasks/exit", payload=exit_any(cid))
        doc = any_pb2.Any(type_url="application/json",
                          value=json.dumps({"spec": {"name": "web"}}).encode())
        await publish(channel, "k8s.io", "/json", payload=doc)
        got = await read_events(call, 3)  # a delivery names every subscription it is for
        call.cancel()
    by_sub: dict[str, list[tuple[str, str]]] = {}
    for ids, event in got:
        for sid in ids:
            by_sub.setdefault(sid, []).append((event.topic, event.payload.type_url))
    assert by_sub == {
        "c2": [("/tasks/exit", TASK_EXIT)],
        "not-c1": [("/tasks/exit", TASK_EXIT), ("/tasks/exit", TASK_EXIT)],
        "json": [("/json", "application/json")],
    }


async def test_v1_watchers_of_other_containers_are_not_woken(server: Server) -> None:
    """Ten kubelet-like watchers, one stream each, each filtering its own container's
    exits: exits of one container wake its watcher only (the hub's wake-up count), and
    only its stream delivers."""
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        calls = []
        for i in range(10):
            call = stub(channel).Subscribe()
            await call.write(add(f"c{i}", ("k8s.io",),
                                 filters=[f'topic=="/tasks/exit",event.container_id==c{i}']))
            assert (await read_kind(call, "add_result")).ok
            calls.append(call)
        hub = server.hub
        await wait_until(lambda: hub.subscription_count == 10)
        before = hub.statistics().subscription_wakeups
        for _ in range(10):
            await publish(channel, "k8s.io", "/tasks/start", payload=exit_any("c1"))
            await publish(channel, "k8s.io", "/tasks/exit", payload=exit_any("c3"))
        got = await read_events(calls[3], 10)
        woken = hub.statistics().subscription_wakeups - before
        # one wake-up per exit at most (fewer when one read took several); before the
        # field index, every exit woke all ten parked watchers
        assert 1 <= woken <= 10, woken
        assert all(ids == ["c3"] for ids, _ in got)
        assert {task_pb2.TaskExit.FromString(e.payload.value).container_id
                for _, e in got} == {"c3"}
        await publish(channel, "k8s.io", "/tasks/exit", payload=exit_any("c5"))
        [(ids, _)] = await read_events(calls[5], 1)  # the others' streams are still served
        assert ids == ["c5"]
        for call in calls:
            call.cancel()


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (["a==" + "x" * 3_500_000], "filters[0]"),  # issue 9: 3.5 MB filter lists
        (["labels.x"] * 1000, "filters[64]"),  # issue 9: 1,000 filters on one subscription
        (['topic~="(a)\\\\1"'], "filters[0]"),  # a backreference: not Go's dialect
        (["topic==/x"], "filters[0]"),  # containerd refuses an unquoted /...
    ],
)
async def test_v1_subscribe_refuses_bad_or_oversized_filters(
    server: Server, filters: list[str], field: str
) -> None:
    async with grpc.aio.insecure_channel(
        server.addresses[0], options=[("grpc.max_send_message_length", 8 << 20)]
    ) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("s", ("a",), filters=filters))
        result = await read_kind(call, "add_result")
        assert not result.ok
        assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert result.error.message.startswith(f"{field}: "), result.error.message
        await call.write(add("ok", ("a",), filters=['topic=="/x"']))
        assert (await read_kind(call, "add_result")).ok
        call.cancel()
    assert server.hub.filter_cache.bytes <= server.hub.config.filters.cache_bytes


async def test_containerd_subscribe_selects_on_payload_fields(tmp_path: Path) -> None:
    """What kubelet-like watchers ask containerd: the exits of their own containers."""
    path = socket_path(tmp_path)
    async with containerd_server(path) as hub, grpc.aio.insecure_channel(f"unix:{path}") as ch:
        events = events_pb2_grpc.EventsStub(ch)
        call = events.Subscribe(events_pb2.SubscribeRequest(
            filters=['topic=="/tasks/exit",event.container_id==c2', "event.io.terminal==true"]))
        await wait_until(lambda: hub.subscription_count == 1, what="subscribed")
        for cid in ("c1", "c2", "c3"):
            for topic in ("/tasks/create", "/tasks/exit"):
                await events.Publish(
                    events_pb2.PublishRequest(topic=topic, event=exit_any(cid)),
                    metadata=(("containerd-namespace", "k8s.io"),), timeout=10)
        create = task_pb2.TaskCreate(container_id="c4", io=task_pb2.TaskIO(terminal=True))
        await hub.publish("default", "/tasks/create", create.SerializeToString(),
                          type_url="containerd.events.TaskCreate")
        with anyio.fail_after(10):
            envelopes = [await call.read() for _ in range(2)]
        call.cancel()
    got = [(e.namespace, e.topic, e.event.type_url) for e in envelopes]
    assert sorted(got) == [("default", "/tasks/create", "containerd.events.TaskCreate"),
                           ("k8s.io", "/tasks/exit", TASK_EXIT)]
    exit_event = task_pb2.TaskExit.FromString(
        next(e.event.value for e in envelopes if e.topic == "/tasks/exit"))
    assert exit_event.container_id == "c2"


async def test_containerd_subscribe_refuses_a_catastrophic_filter_list(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with containerd_server(path) as hub, grpc.aio.insecure_channel(f"unix:{path}") as ch:
        events = events_pb2_grpc.EventsStub(ch)
        call = events.Subscribe(events_pb2.SubscribeRequest(filters=["labels.x"] * 65))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith("filters[64]: exceeds the limit of 64")
        assert hub.subscription_count == 0

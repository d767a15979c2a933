"""The real ``containerd publish`` (what containerd v1 shims run) against the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import grpc
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from broadcaster import Broadcaster, Event
from broadcaster.containerd.events import task_pb2
from broadcaster.v1 import broadcaster_pb2, broadcaster_pb2_grpc

from .harness import binary, containerd_server, run, socket_path

pytestmark = [pytest.mark.anyio, pytest.mark.interop,
              pytest.mark.usefixtures("shared_event_loop")]

EXIT = task_pb2.TaskExit(
    container_id="c1", id="c1", pid=42, exit_status=137,
    exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_001, nanos=9),
).SerializeToString()
V1Call = grpc.aio.StreamStreamCall[
    broadcaster_pb2.SubscribeRequest, broadcaster_pb2.SubscribeResponse]
EXIT_ANY = any_pb2.Any(type_url="containerd.events.TaskExit", value=EXIT)


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return socket_path(tmp_path)


@pytest.fixture
async def hub(sock: str) -> AsyncIterator[Broadcaster]:
    async with containerd_server(sock) as hub:
        yield hub


async def _response(call: V1Call) -> broadcaster_pb2.SubscribeResponse:
    response = await call.read()
    assert isinstance(response, broadcaster_pb2.SubscribeResponse), response
    return response


async def _publish(sock: str, *args: str, stdin: bytes) -> tuple[int, str]:
    done = await run(binary("containerd"), "--address", sock, "publish", *args, stdin=stdin)
    return done.returncode, done.stderr.decode()


async def test_publish_delivers_the_any_byte_for_byte_to_our_api(
    hub: Broadcaster, sock: str
) -> None:
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        stub = broadcaster_pb2_grpc.BroadcasterStub(channel)
        call = stub.Subscribe()
        await call.write(broadcaster_pb2.SubscribeRequest(add=broadcaster_pb2.SubscribeRequest.Add(
            subscription_id="s", namespaces=["shim"])))
        with anyio.fail_after(10):
            while not (await _response(call)).HasField("add_result"):
                pass
        async with hub.subscribe("shim") as local:
            code, err = await _publish(sock, "--namespace", "shim", "--topic", "/tasks/exit",
                                       stdin=EXIT_ANY.SerializeToString())
            assert (code, err) == (0, "")
            with anyio.fail_after(10):
                event = await local.receive()
                while True:
                    response = await _response(call)
                    if response.HasField("event_batch"):
                        break
        call.cancel()
    assert isinstance(event, Event)
    assert (event.namespace, event.topic, event.type_url, event.payload) == (
        "shim", "/tasks/exit", "containerd.events.TaskExit", EXIT)
    [delivery] = response.event_batch.deliveries
    assert delivery.event.payload == EXIT_ANY  # type_url and value, byte for byte
    assert (delivery.event.namespace, delivery.event.topic) == ("shim", "/tasks/exit")


async def test_publish_keeps_a_prefixed_type_url_unchanged(hub: Broadcaster, sock: str) -> None:
    prefixed = any_pb2.Any()
    prefixed.Pack(task_pb2.TaskOOM(container_id="x"))
    async with hub.subscribe("shim") as local:
        code, err = await _publish(sock, "--namespace", "shim", "--topic", "/tasks/oom",
                                   stdin=prefixed.SerializeToString())
        with anyio.fail_after(10):
            event = await local.receive()
    assert (code, err) == (0, "")
    assert isinstance(event, Event)
    assert (event.type_url, event.payload) == (prefixed.type_url, prefixed.value)


async def test_publish_bad_topic_fails_with_the_reason(hub: Broadcaster, sock: str) -> None:
    code, err = await _publish(sock, "--namespace", "shim", "--topic", "bad topic",
                               stdin=EXIT_ANY.SerializeToString())
    assert code != 0
    assert err.startswith("containerd: topic: 'bad topic' must start with '/'")
    assert err.rstrip().endswith(": invalid argument")
    assert "shim" not in hub.statistics().namespaces  # nothing published, nothing created


async def test_publish_without_namespace_fails_with_the_reason(
    hub: Broadcaster, sock: str
) -> None:
    code, err = await _publish(sock, "--topic", "/tasks/exit", stdin=EXIT_ANY.SerializeToString())
    assert code != 0
    assert err.startswith("containerd: containerd-namespace: namespace is required")
    assert err.rstrip().endswith(": invalid argument")
    assert hub.namespace_names() == []


async def test_publish_bad_namespace_fails_with_the_reason(hub: Broadcaster, sock: str) -> None:
    code, err = await _publish(sock, "--namespace", "a..b", "--topic", "/t",
                               stdin=EXIT_ANY.SerializeToString())
    assert code != 0
    assert err.startswith("containerd: containerd-namespace: 'a..b' must be letters")
    assert hub.namespace_names() == []


async def test_publish_empty_stdin_publishes_an_empty_event(
    hub: Broadcaster, sock: str
) -> None:
    async with hub.subscribe("shim") as local:
        code, err = await _publish(sock, "--namespace", "shim", "--topic", "/empty", stdin=b"")
        with anyio.fail_after(10):
            event = await local.receive()
    assert (code, err) == (0, "")
    assert isinstance(event, Event)
    assert (event.topic, event.type_url, event.payload) == ("/empty", "", b"")

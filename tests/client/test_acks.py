"""The client answers each heartbeat with the id that heartbeat carried, and nothing else.

A scripted Subscribe server (grpc.aio, loopback) sends heartbeats with chosen ids and
reads what the client sends back; the real server counts an Ack only when it answers a
heartbeat it sent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpc
import grpc.aio
import pytest

from broadcaster.client import Client
from broadcaster.v1 import broadcaster_pb2 as pb

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

HEARTBEAT_IDS = (7, 8, 1_000_000_007)


class ScriptedSubscribe:
    """Accepts one Add, sends :data:`HEARTBEAT_IDS` as heartbeats (each after the previous
    one's answer), then records the next request (expected: the Remove)."""

    def __init__(self) -> None:
        self.answers: list[pb.SubscribeRequest] = []
        self.after: pb.SubscribeRequest | None = None
        self.done = anyio.Event()

    async def handle(self, _requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        add = (await context.read()).add
        await context.write(pb.SubscribeResponse(add_result=pb.AddResult(
            subscription_id=add.subscription_id, ok=True, epoch="e1")))
        for heartbeat_id in HEARTBEAT_IDS:
            await context.write(pb.SubscribeResponse(heartbeat=pb.Heartbeat(
                heartbeat_id=heartbeat_id, epoch="e1")))
            self.answers.append(await context.read())
        self.done.set()
        request = await context.read()
        if isinstance(request, pb.SubscribeRequest):
            self.after = request

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "broadcaster.v1.Broadcaster",
            {"Subscribe": grpc.stream_stream_rpc_method_handler(
                self.handle, request_deserializer=pb.SubscribeRequest.FromString,
                response_serializer=pb.SubscribeResponse.SerializeToString)},
        )])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await server.stop(None)


async def test_each_heartbeat_is_acked_with_its_own_id() -> None:
    script = ScriptedSubscribe()
    async with script.serve() as address, Client(address) as client:
        with anyio.fail_after(10):
            async with client.subscribe("ns") as sub:
                await script.done.wait()
                remove_expected = sub.id
            while script.after is None:  # bounded by fail_after
                await anyio.sleep(0.01)
        assert client.subscribe_stream is not None
        assert client.subscribe_stream.heartbeats_acked == len(HEARTBEAT_IDS)
    assert [r.WhichOneof("kind") for r in script.answers] == ["ack"] * len(HEARTBEAT_IDS)
    assert tuple(r.ack.heartbeat_id for r in script.answers) == HEARTBEAT_IDS
    # nothing in between: the next request is the subscription's Remove
    assert script.after.WhichOneof("kind") == "remove"
    assert script.after.remove.subscription_id == remove_expected

"""Helpers for tests over real gRPC connections."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
from grpc_reflection.v1alpha import reflection_pb2

from broadcaster.v1 import broadcaster_pb2 as pb
from broadcaster.v1 import broadcaster_pb2_grpc as pb_grpc


def add(sid: str, namespaces: tuple[str, ...] = (), **fields: Any) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(
        add=pb.SubscribeRequest.Add(subscription_id=sid, namespaces=namespaces, **fields))


def remove(sid: str) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(remove=pb.SubscribeRequest.Remove(subscription_id=sid))


def ack(heartbeat_id: int) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(ack=pb.SubscribeRequest.Ack(heartbeat_id=heartbeat_id))


async def read_kind(call: Any, kind: str, within: float = 5.0,
                    skip: tuple[str, ...] = ("heartbeat",)) -> Any:
    """Read responses until one of *kind*; others in *skip* are ignored, any other fails."""
    with anyio.fail_after(within):
        while True:
            response = await call.read()
            assert response is not grpc.aio.EOF, f"stream ended while waiting for {kind}"
            got = response.WhichOneof("kind")
            if got == kind:
                return getattr(response, kind)
            assert got in skip, f"expected {kind}, got {response}"


async def read_events(call: Any, count: int, within: float = 5.0) -> list[tuple[list[str], Any]]:
    """Read EventBatch messages until *count* deliveries arrived."""
    out: list[tuple[list[str], Any]] = []
    while len(out) < count:
        batch = await read_kind(call, "event_batch", within)
        out += [(list(d.subscription_ids), d.event) for d in batch.deliveries]
    return out


def stub(channel: grpc.aio.Channel) -> pb_grpc.BroadcasterStub:
    return pb_grpc.BroadcasterStub(channel)


async def publish(channel: grpc.aio.Channel, namespace: str, topic: str,
                  **fields: Any) -> pb.PublishResponse:
    return await stub(channel).Publish(  # type: ignore[no-any-return]
        pb.PublishRequest(namespace=namespace, topic=topic, **fields))


async def wait_until(predicate: Any, within: float = 5.0) -> None:
    """Poll *predicate* (cheap, in-process) until true, at most *within* seconds."""
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.01)


def acked(hub: Any) -> list[int]:
    """The newest heartbeat each subscription of *hub* answered: the hub's own
    bookkeeping (no API exposes it), read to check that acks counted without racing a
    real-time eviction limit against the machine's load."""
    return sorted(sub.acked for sub in hub._subs)


async def wait_acked(hub: Any, heartbeat_id: int, subscriptions: int) -> None:
    """Wait (bounded) until *subscriptions* subscriptions of *hub* answered *heartbeat_id*
    or a newer one: an ack of a heartbeat a subscription has not been given yet counts
    when it is given (at the next heartbeat pass)."""
    await wait_until(lambda: (len(ids := acked(hub)) == subscriptions
                              and all(i >= heartbeat_id for i in ids)))


async def code_of(coro: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and details *coro* (a call) ended with: OK if it did not raise."""
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def list_services(call: Any) -> object:
    """Ask a reflection stream for the service list and read the answer."""
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    return await call.read()

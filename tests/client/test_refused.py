"""Streams the server refuses (HTTP/2 REFUSED_STREAM) are sent again: no call fails.

A server at its ``max_concurrent_streams`` refuses a new stream when the client opens it
in the moment between reading another stream's status and the server releasing that
stream's slot; gRPC core retries a refused stream once, and a second refusal fails the
call with ``UNAVAILABLE: Stream removed (RST_STREAM ... error code 7)``."""

from __future__ import annotations

import collections
from typing import Any

import anyio
import grpc
import grpc.aio
import pytest

from broadcaster.client import Client, ClientError
from broadcaster.client._retry import refused
from broadcaster.v1 import broadcaster_pb2 as pb
from broadcaster.v1 import broadcaster_pb2_grpc as pb_grpc

from .conftest import MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

METHODS = {"Publish", "Stats", "PublishStream", "Subscribe"}


async def test_a_burst_at_the_stream_limit_loses_no_call(make_server: MakeServer) -> None:
    """Bursts of every kind of call over one connection to a server that allows 2
    streams at once: the client meets refusals of each kind (it counts the ones it sent
    again), and not one call fails. Each event published is there exactly once."""
    failures: list[str] = []
    done: collections.Counter[str] = collections.Counter()
    async with make_server(max_concurrent_streams=2) as server, \
            Client(server.addresses[0], timeout=30) as client:

        async def publish() -> None:
            await client.publish("ns", "/unary", b"")

        async def stats() -> None:
            await client.stats(["ns"])

        async def publish_stream() -> None:
            async with client.publisher("ns") as pub:
                await pub.publish("/stream", b"")

        async def subscribe() -> None:
            async with client.subscribe("ns", own_stream=True):
                pass

        async def run(kind: str, call: Any) -> None:
            try:
                await call()
            except ClientError as exc:
                failures.append(f"{kind}: {exc!r}")
            else:
                done[kind] += 1

        await client.publish("ns", "/first", b"")  # Stats of a namespace needs it to exist
        rounds = 0
        with anyio.fail_after(45):
            # bounded: refusals are a race, so a round may miss one kind
            while set(client.retried_refusals) != METHODS and rounds < 20:
                rounds += 1
                async with anyio.create_task_group() as tg:
                    for _ in range(30):
                        for kind, call in (("Publish", publish), ("Stats", stats),
                                           ("PublishStream", publish_stream),
                                           ("Subscribe", subscribe)):
                            tg.start_soon(run, kind, call)
                assert not failures, failures[:5]
        retried = client.retried_refusals
        stats_ns = (await client.stats(["ns"])).namespaces
    assert set(retried) == METHODS, (retried, rounds)
    assert done == dict.fromkeys(METHODS, 30 * rounds)
    # a refused publish was not published twice: one sequence per event sent
    assert [n.head_sequence for n in stats_ns if n.namespace == "ns"] == [1 + 60 * rounds]


async def test_without_the_client_such_bursts_fail(make_server: MakeServer) -> None:
    """The control: the same server and bursts over a plain grpc channel get the
    refusals the client retries (after gRPC core's own single transparent retry)."""
    statuses: collections.Counter[tuple[str, bool]] = collections.Counter()
    async with make_server(max_concurrent_streams=2) as server:
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            stub = pb_grpc.BroadcasterStub(channel)

            async def publish() -> None:
                try:
                    await stub.Publish(pb.PublishRequest(namespace="ns", topic="/t"),
                                       timeout=30)
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details()
                    statuses[(code.name, refused(code, details))] += 1

            with anyio.fail_after(45):
                for _ in range(20):  # bounded: stop at the first refusal
                    async with anyio.create_task_group() as tg:
                        for _ in range(200):
                            tg.start_soon(publish)
                    if statuses:
                        break
    assert statuses and set(statuses) == {("UNAVAILABLE", True)}, statuses


"""Streams the server refuses (HTTP/2 REFUSED_STREAM) are sent again: no call fails.

A server at its ``max_concurrent_streams`` refuses a new stream when the client opens it
in the moment between reading another stream's status and the server releasing that
stream's slot; gRPC core retries a refused stream once, and a second refusal fails the
call with ``UNAVAILABLE: Stream removed (RST_STREAM ... error code 7)``.

The server refuses only with ``stream_overload_protection`` on (off by default since the
isolation work): these tests turn it on to provoke real refusals. Which calls of a burst
are refused is a race; streams meet refusals reliably, unary calls rarely (gRPC core's
own transparent retry usually absorbs them), so the unary retry path is also checked
against scripted refusals."""

from __future__ import annotations

import collections
import random
from typing import Any

import anyio
import grpc
import grpc.aio
import pytest

from broadcaster.client import Client, ClientError
from broadcaster.client._retry import Refusals, call_unary, failed_sending, refused
from broadcaster.v1 import broadcaster_pb2 as pb
from broadcaster.v1 import broadcaster_pb2_grpc as pb_grpc

from .conftest import MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

METHODS = {"Publish", "Stats", "PublishStream", "Subscribe"}
STREAMS = {"PublishStream", "Subscribe"}  # the calls a burst refuses reliably


async def test_a_burst_at_the_stream_limit_loses_no_call(make_server: MakeServer) -> None:
    """Bursts of every kind of call over one connection to a server that allows 2
    streams at once: the client meets refusals (at least of both streaming calls; it
    counts the ones it sent again), and not one call fails. Each event published is
    there exactly once."""
    failures: list[str] = []
    done: collections.Counter[str] = collections.Counter()
    async with make_server(max_concurrent_streams=2, stream_overload_protection=True) as server, \
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
        sent: collections.Counter[str] = collections.Counter()
        with anyio.fail_after(45):
            # bounded: refusals are a race, so a round may miss one kind; kinds not yet
            # refused get larger bursts
            while not set(client.retried_refusals) >= STREAMS and rounds < 20:
                rounds += 1
                async with anyio.create_task_group() as tg:
                    for kind, call in (("Publish", publish), ("Stats", stats),
                                       ("PublishStream", publish_stream),
                                       ("Subscribe", subscribe)):
                        burst = 30 if kind in client.retried_refusals else 100
                        sent[kind] += burst
                        for _ in range(burst):
                            tg.start_soon(run, kind, call)
                assert not failures, failures[:5]
        retried = client.retried_refusals
        stats_ns = (await client.stats(["ns"])).namespaces
    assert STREAMS <= set(retried) <= METHODS, (retried, rounds)
    assert done == sent
    # a refused publish was not published twice: one sequence per event sent
    published = 1 + sent["Publish"] + sent["PublishStream"]
    assert [n.head_sequence for n in stats_ns if n.namespace == "ns"] == [published]


async def test_without_the_client_such_bursts_fail(make_server: MakeServer) -> None:
    """The control: the same server and bursts over a plain grpc channel get the
    refusals the client retries (after gRPC core's own single transparent retry)."""
    statuses: collections.Counter[tuple[str, bool]] = collections.Counter()
    async with make_server(max_concurrent_streams=2, stream_overload_protection=True) as server:
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            stub = pb_grpc.BroadcasterStub(channel)

            async def publish() -> None:
                try:
                    await stub.Publish(pb.PublishRequest(namespace="ns", topic="/t"),
                                       timeout=30)
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details()
                    statuses[(code.name, refused(code, details))] += 1

            async def publish_stream() -> None:
                call = stub.PublishStream(timeout=30)
                try:
                    await call.write(pb.PublishStreamRequest(batch_id=1))
                    await call.read()
                    await call.done_writing()
                    await call.code()
                except grpc.aio.AioRpcError as exc:
                    # grpc.aio may report a stream refused while a write was in flight as
                    # INTERNAL "Internal error from Core" (the client retries those too)
                    code, details = exc.code(), exc.details()
                    statuses[(code.name, refused(code, details)
                              or failed_sending(code, details))] += 1

            with anyio.fail_after(45):
                for _ in range(20):  # bounded: stop at the first refusal
                    async with anyio.create_task_group() as tg:
                        for _ in range(100):
                            tg.start_soon(publish)
                            tg.start_soon(publish_stream)
                    if statuses:
                        break
    # refused, as the client sees it: UNAVAILABLE "Stream removed", or INTERNAL when the
    # stream was refused while its first write was in flight (the client retries both)
    assert statuses[("UNAVAILABLE", True)] + statuses[("INTERNAL", True)], statuses
    assert set(statuses) <= {("UNAVAILABLE", True), ("INTERNAL", True)}, statuses



@pytest.mark.parametrize("method", ["Publish", "Stats"])
async def test_unary_calls_are_sent_again_after_refusals(method: str) -> None:
    """The unary path (Publish, Stats): refused twice, the third attempt answers; the
    refusals are counted, and a failure that is not a refusal is raised at once."""
    rng = random.Random(1)
    refusals = Refusals()
    attempts = 0
    details = "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))"

    async def attempt(seconds: float) -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise _Failed(grpc.StatusCode.UNAVAILABLE, details)
        return "answer"

    assert await call_unary(method, attempt, seconds=5, rng=rng, refusals=refusals) == "answer"
    assert (attempts, refusals.retried) == (3, {method: 2})

    async def fails(seconds: float) -> str:
        raise _Failed(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")

    with pytest.raises(grpc.aio.AioRpcError):
        await call_unary(method, fails, seconds=5, rng=rng, refusals=refusals)
    assert refusals.retried == {method: 2}  # not a refusal: not sent again


class _Failed(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

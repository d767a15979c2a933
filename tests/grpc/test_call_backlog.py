"""Calls that arrive faster than the event loop takes them are served, never ended.

grpc.aio takes incoming calls from gRPC core one at a time, on the event loop; the
others wait in core's queue. By default core cancels queued calls (at random once 1,000
wait, all beyond 3,000, any that waited 30 s) with CANCELLED, which a client sending its
first request reads as ``INTERNAL: Internal error from Core``: a fan-out abuse of 5,000
Subscribe streams (50 per connection) had 1,447 of them ended so. Here the test's own
loop opens all the streams in one go, so the server (on the same loop) cannot take them
as fast as they arrive and core's queue holds well over 1,000 at once.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import grpc
import pytest

from broadcaster import HubConfig
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, publish, remove, stub

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop"),
              pytest.mark.memory_only("gRPC's call queue, not the log")]

STREAMS, PER_CONNECTION = 1_600, 50


class _Fan:
    """What the streams of :func:`_fan_in` got: each Add's answer, and how each ended."""

    def __init__(self) -> None:
        self.answers: collections.Counter[str] = collections.Counter()
        self.ended: collections.Counter[str] = collections.Counter()
        self.settled = anyio.Event()  # every stream answered or ended
        self._settled = 0

    def settle(self) -> None:
        self._settled += 1
        if self._settled == STREAMS:
            self.settled.set()


async def _fan_in(address: str, meanwhile: Callable[[_Fan], Awaitable[None]]) -> _Fan:
    """STREAMS Subscribe streams (PER_CONNECTION per connection, connected beforehand),
    all created in one turn of the loop so that they reach the server together, each
    with one Add; *meanwhile* runs as they are served. Then each stream removes its
    subscription and half-closes, so that every call ends (OK) within the test."""
    channels = [grpc.aio.insecure_channel(address,
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(STREAMS // PER_CONNECTION)]
    fan = _Fan()
    done = anyio.Event()

    async def requests(i: int) -> Any:
        yield add(f"s{i}", ("fan",))
        await done.wait()
        yield remove(f"s{i}")

    async def one(call: Any) -> None:
        answered = False
        try:
            async for response in call:
                if response.WhichOneof("kind") == "add_result":
                    result = response.add_result
                    fan.answers["added" if result.ok else f"refused {result.error}"] += 1
                    answered = True
                    fan.settle()
            fan.ended["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            fan.ended[f"{exc.code().name}: {exc.details()}"] += 1
        if not answered:
            fan.settle()

    try:
        with anyio.fail_after(30):
            for channel in channels:
                await channel.channel_ready()
        calls = [stub(channels[i // PER_CONNECTION]).Subscribe(requests(i))
                 for i in range(STREAMS)]
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for call in calls:
                    tg.start_soon(one, call)
                await meanwhile(fan)
                done.set()
    finally:
        done.set()
        with anyio.CancelScope(shield=True):
            for channel in channels:
                await channel.close()
    return fan


def _quiet_server_settings() -> dict[str, Any]:
    # heartbeats far apart: the streams' only traffic is their Add and its answer
    return {"hub": HubConfig(heartbeat_interval=60.0)}


async def test_streams_opened_faster_than_the_loop_accepts_them_are_all_served(
        make_server: Any) -> None:
    server = await make_server(**_quiet_server_settings())

    async def check(fan: _Fan) -> None:
        await fan.settled.wait()
        assert (fan.answers, fan.ended) == ({"added": STREAMS}, {})
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            stats = await stub(channel).Stats(pb.StatsRequest())
        assert stats.subscriptions == STREAMS

    fan = await _fan_in(server.addresses[0], check)
    assert fan.ended == {"OK": STREAMS}


async def test_a_publish_does_not_wait_behind_subscribe_calls_not_yet_taken(
        make_server: Any) -> None:
    """Each method of the API has gRPC core's queue of its own: a Publish sent after
    STREAMS Subscribe calls is taken long before the last of them."""
    server = await make_server(**_quiet_server_settings())
    async with grpc.aio.insecure_channel(server.addresses[0]) as other:
        await publish(other, "other", "/warm-up")  # connected, and the namespace exists
        taken: list[int] = []

        async def publish_meanwhile(fan: _Fan) -> None:
            await publish(other, "other", "/meanwhile")
            taken.append(server.subscribe_streams)
            await fan.settled.wait()
            assert (fan.answers, fan.ended) == ({"added": STREAMS}, {})

        await _fan_in(server.addresses[0], publish_meanwhile)
    assert taken[0] < STREAMS // 2, f"the Publish waited for {taken[0]} Subscribe calls"

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
from typing import Any

import anyio
import grpc
import pytest

from broadcaster import HubConfig
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, remove, stub

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop"),
              pytest.mark.memory_only("gRPC's call queue, not the log")]

STREAMS, PER_CONNECTION = 1_600, 50


async def test_streams_opened_faster_than_the_loop_accepts_them_are_all_served(
        make_server: Any) -> None:
    # heartbeats far apart: the streams' only traffic is their Add and its answer
    server = await make_server(hub=HubConfig(heartbeat_interval=60.0))
    channels = [grpc.aio.insecure_channel(server.addresses[0],
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(STREAMS // PER_CONNECTION)]
    outcomes: collections.Counter[str] = collections.Counter()
    ended: collections.Counter[str] = collections.Counter()
    added = anyio.Event()
    done = anyio.Event()
    try:
        with anyio.fail_after(30):
            for channel in channels:  # connected first: the calls are what arrives at once
                await channel.channel_ready()

        async def requests(i: int) -> Any:
            yield add(f"s{i}", ("fan",))
            await done.wait()
            yield remove(f"s{i}")  # then half-closed: the server ends the call, OK

        settled = 0  # streams answered or ended

        def settle() -> None:
            nonlocal settled
            settled += 1
            if settled == STREAMS:
                added.set()

        async def one(call: Any) -> None:
            answered = False
            try:
                async for response in call:
                    if response.WhichOneof("kind") == "add_result":
                        ok = response.add_result.ok
                        outcomes["added" if ok else f"refused {response.add_result.error}"] += 1
                        answered = True
                        settle()
                ended["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                ended[f"{exc.code().name}: {exc.details()}"] += 1
            if not answered:
                settle()

        # every call created in one turn of the loop: they reach the server together
        calls = [stub(channels[i // PER_CONNECTION]).Subscribe(requests(i))
                 for i in range(STREAMS)]
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for call in calls:
                    tg.start_soon(one, call)
                await added.wait()
                assert (outcomes, ended) == ({"added": STREAMS}, {})
                stats = await stub(channels[0]).Stats(pb.StatsRequest())
                assert stats.subscriptions == STREAMS
                done.set()  # each call ends as it should: every one finished in this test
        assert ended == {"OK": STREAMS}
    finally:
        done.set()
        with anyio.CancelScope(shield=True):
            for channel in channels:
                await channel.close()

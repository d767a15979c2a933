"""Turns of the event loop shared by Subscribe streams: a fan-out to many streams is
written a bounded number of streams per turn, so other tasks advance in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from broadcaster import Broadcaster, HubConfig
from broadcaster._core._subscription import WIDE
from broadcaster.grpc._subscribe_stream import StreamLimits, SubscribeStream
from broadcaster.grpc._turns import Turns
from broadcaster.v1 import broadcaster_pb2 as pb

from .._ticker import Ticker
from ._helpers import add, remove

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


async def test_take_admits_per_turn_in_arrival_order() -> None:
    turns = Turns(3)
    ticker = Ticker()
    admitted: list[tuple[int, int]] = []

    async def stream(index: int) -> None:
        await turns.take()
        admitted.append((index, ticker.turn))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        await anyio.lowlevel.checkpoint()
        for i in range(10):
            tg.start_soon(stream, i)
        with anyio.fail_after(10):
            while len(admitted) < 10:
                await anyio.lowlevel.checkpoint()
        ticker.running = False
    assert [i for i, _ in admitted] == list(range(10))  # first come, first served
    per_turn: dict[int, int] = {}
    for _, turn in admitted:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= 2 * 3  # this turn's room and the woken ones
    assert len(per_turn) >= 10 // 6 + 1


async def test_take_is_immediate_without_contention() -> None:
    turns = Turns(4)
    for _ in range(4):
        with anyio.fail_after(1):
            await turns.take()  # no yield needed
    assert turns.waiting == 0
    with pytest.raises(ValueError, match="per_turn"):
        Turns(0)


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    turns = Turns(1)
    done: list[int] = []

    async def stream(index: int) -> None:
        await turns.take()
        done.append(index)

    async with anyio.create_task_group() as tg:
        await turns.take()  # this turn is used
        with anyio.CancelScope() as scope:
            scope.cancel()
            await turns.take()  # cancelled while waiting
        for i in range(3):
            tg.start_soon(stream, i)
    assert done == [0, 1, 2]


async def _requests(messages: list[pb.SubscribeRequest]) -> AsyncIterator[pb.SubscribeRequest]:
    for message in messages:
        yield message
    await anyio.sleep_forever()


async def _fan_out(streams: int, turns: Turns | None, peers: list[str] | None = None,
                   namespaces: list[str] | None = None, published: list[int] | None = None
                   ) -> list[int]:
    """Publish one event to *streams* Subscribe streams (fake writes, real hub; stream
    *i* of connection ``peers[i]``, subscribed to ``namespaces[i]``, default ``fan``;
    one event in each namespace, in order of first mention, the next once half the
    streams wait for a turn); return the turn of the event loop (counted by a bystander
    task that checkpoints once per turn) at which each stream wrote its event, and put
    the turn of each publish in *published*."""
    namespaces = namespaces or ["fan"] * streams
    ticker = Ticker()
    written: list[int] = [-1] * streams
    async with Broadcaster(HubConfig(heartbeat_interval=3600)) as hub:
        async with anyio.create_task_group() as tg:
            ready = 0

            def writer(index: int) -> Any:
                async def write(data: bytes) -> None:
                    nonlocal ready
                    response = pb.SubscribeResponse.FromString(data)
                    if response.WhichOneof("kind") == "add_result":
                        ready += 1
                    elif response.WhichOneof("kind") == "event_batch":
                        written[index] = ticker.turn
                return write

            limits = StreamLimits(batch_linger=0)
            for i in range(streams):
                stream = SubscribeStream(hub, limits, writer(i), turns=turns,
                                         peer=peers[i] if peers else "")
                tg.start_soon(stream.run, _requests([add("s", (namespaces[i],))]))
                with anyio.fail_after(20):  # subscribed in order
                    while ready <= i:
                        await anyio.sleep(0.001)
            tg.start_soon(ticker.run)
            for i, namespace in enumerate(dict.fromkeys(namespaces)):
                if i:
                    assert turns is not None
                    with anyio.fail_after(20):
                        while turns.waiting < streams // 2:
                            await anyio.lowlevel.checkpoint()
                if published is not None:
                    published.append(ticker.turn)
                await hub.publish(namespace, "/e")
            with anyio.fail_after(20):
                while -1 in written:
                    await anyio.lowlevel.checkpoint()
            ticker.running = False
            tg.cancel_scope.cancel()
    return written


async def test_a_fan_out_is_written_a_few_streams_per_turn() -> None:
    per_turn_limit = 4
    gated = await _fan_out(200, Turns(per_turn_limit))
    assert max(gated.count(turn) for turn in set(gated)) <= 2 * per_turn_limit
    # The bystander ran between the first write and the last.
    assert max(gated) - min(gated) >= 200 // (2 * per_turn_limit)
    # Without turns, every stream writes in the same turn: nothing else runs meanwhile.
    ungated = await _fan_out(200, None)
    assert max(ungated) - min(ungated) <= 1


async def test_another_connections_stream_goes_within_a_few_turns_of_a_fan_out() -> None:
    """The room of each turn goes round-robin between connections: one client's 200
    streams woken by one event wait for each other, and another client's stream, woken
    while 100 of them still wait (an event of its own namespace), goes in the next
    turns, not after them (first come, first served: 25 turns later or more)."""
    peers = ["ipv4:127.0.0.1:1000"] * 200 + ["ipv4:127.0.0.1:2000"]
    namespaces = ["fan"] * 200 + ["other"]
    published: list[int] = []
    turns = await _fan_out(201, Turns(4), peers, namespaces, published)
    assert turns[-1] - published[1] <= 15, (turns[-1], published)
    assert max(turns) - min(turns) >= 200 // 8  # the many still went a few per turn
    published.clear()
    fifo = await _fan_out(201, Turns(4), [""] * 201, namespaces, published)  # one client
    assert fifo[-1] - published[1] >= 100 // 4, (fifo[-1], published)


async def _closing_together(streams: int, namespaces: int, *, removed: bool = False
                            ) -> tuple[list[int], list[int]]:
    """*streams* Subscribe streams (fake writes, real hub of *namespaces* namespaces)
    add an all-namespace subscription at the same moment, then all close (cancelled), or
    Remove it (*removed*); return the turns of the event loop at which the hub
    registered and unregistered each."""
    ticker = Ticker()
    registered: list[int] = []
    unregistered: list[int] = []
    async with Broadcaster(HubConfig(heartbeat_interval=3600)) as hub:
        for i in range(namespaces):
            await hub.publish(f"ns{i}", "/e")
        register, unregister = hub.register, hub.unregister

        def registering(sub: Any) -> None:
            registered.append(ticker.turn)
            register(sub)

        def unregistering(sub: Any) -> None:
            unregistered.append(ticker.turn)
            unregister(sub)

        hub.register, hub.unregister = registering, unregistering  # type: ignore[method-assign]
        go, removes = anyio.Event(), anyio.Event()

        async def requests() -> AsyncIterator[pb.SubscribeRequest]:
            await go.wait()
            yield add("s")
            if removed:
                await removes.wait()
                yield remove("s")
            await anyio.sleep_forever()

        async def write(data: bytes) -> None:
            pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            async with anyio.create_task_group() as streams_tg:
                for _ in range(streams):
                    stream = SubscribeStream(hub, StreamLimits(batch_linger=0), write)
                    streams_tg.start_soon(stream.run, requests())
                await anyio.lowlevel.checkpoint()
                go.set()
                with anyio.fail_after(20):
                    while hub.subscription_count < streams:
                        await anyio.lowlevel.checkpoint()
                if removed:
                    removes.set()
                    with anyio.fail_after(20):
                        while len(unregistered) < streams:
                            await anyio.lowlevel.checkpoint()
                streams_tg.cancel_scope.cancel()
            ticker.running = False
        assert len(unregistered) == streams and hub.subscription_count == 0
    return registered, unregistered


@pytest.mark.parametrize("removed", [False, True], ids=["closed", "removed"])
async def test_wide_subscriptions_register_and_close_one_per_turn(removed: bool) -> None:
    """Registering or closing a subscription over more than WIDE namespaces walks them
    all (a millisecond or more of the loop for 1,000): streams doing it together take
    turns of the event loop, one each (``Broadcaster.wide_turn``), whether the client
    removes the subscriptions or the streams end."""
    registered, unregistered = await _closing_together(6, WIDE + 10, removed=removed)
    assert len(set(registered)) == 6, registered
    assert len(set(unregistered)) == 6, unregistered
    # Narrower ones cost little and go together.
    registered, unregistered = await _closing_together(6, WIDE, removed=removed)
    assert len(set(registered)) <= 2 and len(set(unregistered)) <= 2, (
        registered, unregistered)

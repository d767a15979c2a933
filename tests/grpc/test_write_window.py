"""The write window shared by Subscribe streams (issue 9, ``fanout_streams``): at most
``size`` fresh writes in flight, room given round-robin between connections, a write
stuck on a client that does not read stops counting after ``stale_after``."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from broadcaster.grpc import ServerConfig
from broadcaster.grpc._write_window import WriteWindow

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


async def _queue(window: WriteWindow, peer: str, order: list[str],
                 tickets: list[int]) -> None:
    ticket = await window.begin(peer)
    order.append(peer)
    tickets.append(ticket)


async def _until(predicate: object, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # type: ignore[operator]
            await anyio.lowlevel.checkpoint()


async def test_at_most_size_writes_are_in_flight() -> None:
    window = WriteWindow(2, stale_after=3600)
    first, second = await window.begin("a"), await window.begin("a")
    order: list[str] = []
    tickets: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_queue, window, "a", order, tickets)
        await _until(lambda: window.waiting == 1)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert order == [] and window.in_flight == 2  # no room: it waits
        window.end(first)
        await _until(lambda: order == ["a"])
    assert window.in_flight == 2
    window.end(second)
    window.end(tickets[0])
    window.end(tickets[0])  # twice: no effect
    assert window.in_flight == 0 and window.waiting == 0


async def test_room_goes_round_robin_between_connections() -> None:
    """A connection with many streams waiting does not go ahead of one that came later
    with one: the latter's write is the second to go, not the sixth."""
    window = WriteWindow(1, stale_after=3600)
    held = await window.begin("busy")
    order: list[str] = []
    tickets: list[int] = []
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(_queue, window, "busy", order, tickets)
        await _until(lambda: window.waiting == 5)
        tg.start_soon(_queue, window, "other", order, tickets)
        await _until(lambda: window.waiting == 6)
        window.end(held)
        for n in range(1, 7):
            await _until(lambda n=n: len(order) == n)  # type: ignore[misc]
            window.end(tickets[-1])
    assert order == ["busy", "other", "busy", "busy", "busy", "busy"]


async def test_a_write_stuck_on_its_client_stops_counting() -> None:
    """A write that does not complete (a client that does not read) holds room for
    ``stale_after`` only; nothing has to complete for the next write to go."""
    window = WriteWindow(1, stale_after=0.02)
    await window.begin("stuck")  # never ended
    loop = asyncio.get_running_loop()
    started = loop.time()
    with anyio.fail_after(5):
        ticket = await window.begin("other")
    assert loop.time() - started >= 0.02
    assert window.in_flight == 1  # only the fresh one
    window.end(ticket)
    assert window.in_flight == 0


async def test_a_cancelled_waiter_passes_its_room_on() -> None:
    window = WriteWindow(1, stale_after=3600)
    held = await window.begin("a")
    order: list[str] = []
    tickets: list[int] = []
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancellable, window, scope)
        await _until(lambda: window.waiting == 1)
        tg.start_soon(_queue, window, "b", order, tickets)
        await _until(lambda: window.waiting == 2)
        scope.cancel()
        await _until(lambda: window.waiting == 1)
        window.end(held)
        await _until(lambda: order == ["b"])
    assert window.in_flight == 1


async def _cancellable(window: WriteWindow, scope: anyio.CancelScope) -> None:
    with scope:
        await window.begin("a")
        raise AssertionError("the write should have been cancelled")


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        WriteWindow(0)
    with pytest.raises(ValueError, match="stale_after"):
        WriteWindow(1, stale_after=0)
    with pytest.raises(Exception, match="stream_write_window"):
        ServerConfig(stream_write_window=-1)
    with pytest.raises(Exception, match="max_heartbeats_per_second"):
        ServerConfig(max_heartbeats_per_second=-1)

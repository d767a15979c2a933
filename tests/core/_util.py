from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import sniffio

import broadcaster
from broadcaster import DropNotice, Event, Heartbeat, HubConfig, Item, Subscription
from broadcaster._core._log import LogFactory, MemoryLog

from .._backends import StoreFactory

#: the stores of the current test's log backend (set by conftest's ``hub_stores``)
STORES: StoreFactory | None = None


class Broadcaster(broadcaster.Broadcaster):
    """The hub on the current test's log backend (``tests/core/conftest.py``)."""

    def __init__(self, config: HubConfig | None = None, *,
                 log_factory: LogFactory = MemoryLog, **kwargs: Any) -> None:
        if "store" not in kwargs and STORES is not None:
            kwargs["store"] = STORES()
        super().__init__(config, log_factory=log_factory, **kwargs)


def events_of(items: list[Item]) -> list[Event]:
    return [i for i in items if isinstance(i, Event)]


def notices_of(items: list[Item]) -> list[DropNotice]:
    return [i for i in items if isinstance(i, DropNotice)]


def drain(sub: Subscription) -> list[Item]:
    """Everything ready now (heartbeats left out)."""
    out: list[Item] = []
    while True:
        try:
            out.extend(sub.receive_batch_nowait(4096))
        except (anyio.WouldBlock, anyio.EndOfStream):
            return [i for i in out if not isinstance(i, Heartbeat)]


async def all_blocked() -> None:
    """Return once every other task is blocked: ``anyio.wait_all_tasks_blocked()``, on
    asyncio checked at every turn of the event loop.

    anyio's asyncio version sleeps 0.1 s whenever another task is not blocked, then
    checks again. The hub's loop monitor and overflow sweep wake every 0.1 s too: once
    one of them wakes in the same turn of the loop as the check, it does so at every
    check, and the wait never ends (a test on the jetstream log, where the first check
    finds the NATS connection's task ready, hung until the 60 s timeout). Here each turn
    of the loop is a check, so such a task is seen blocked again a turn later; bounded by
    a count of turns (a task runnable at every turn never lets anyio's version return
    either)."""
    if sniffio.current_async_library() != "asyncio":
        await anyio.wait_all_tasks_blocked()
        return
    this = asyncio.current_task()
    for _ in range(100_000):
        await anyio.lowlevel.checkpoint()
        if all(task is this or _blocked(task) for task in asyncio.all_tasks()):
            return
    raise AssertionError("other tasks still runnable after 100,000 turns of the loop")


def _blocked(task: asyncio.Task[Any]) -> bool:
    waiter = task._fut_waiter  # type: ignore[attr-defined]  # what anyio reads too
    return waiter is not None and not waiter.done()


async def until(condition: Callable[[], bool], turns: int = 50) -> None:
    """Let the other tasks run until *condition* holds, without sleeping for time: each
    turn waits until every other task is blocked (``anyio.wait_all_tasks_blocked``; on
    trio's autojumping clock this never moves time). Bounded by *turns*.

    A durable log's engine may work outside the event loop (the local log's worker
    thread, the jetstream log's connection to NATS), where a task waiting for it counts
    as blocked: on such a log *condition* is then polled every millisecond until it
    holds, bounded by 10 s of the clock."""
    for _ in range(turns):
        if condition():
            return
        await all_blocked()
    if STORES is not None and STORES.outside_loop:
        with anyio.fail_after(10):
            while not condition():  # the engine's progress is not a task's: poll it
                await anyio.sleep(0.001)
    assert condition(), "still false once every other task was blocked"


async def open_all(hub: broadcaster.Broadcaster, *subs: Subscription) -> None:
    """Open *subs* as an edge does: ``await hub.prepare(sub)`` (opens a durable log the
    first time a namespace is used), then ``sub.open()``."""
    for sub in subs:
        await hub.prepare(sub)
        sub.open()

from __future__ import annotations

from collections.abc import Callable

import anyio

from broadcaster import DropNotice, Event, Heartbeat, Item, Subscription


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


async def until(condition: Callable[[], bool], turns: int = 50) -> None:
    """Let the other tasks run until *condition* holds, without sleeping for time: each
    turn waits until every other task is blocked (``anyio.wait_all_tasks_blocked``; on
    trio's autojumping clock this never moves time). Bounded by *turns*."""
    for _ in range(turns):
        if condition():
            return
        await anyio.wait_all_tasks_blocked()
    assert condition(), "still false once every other task was blocked"

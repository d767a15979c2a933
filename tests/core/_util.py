from __future__ import annotations

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

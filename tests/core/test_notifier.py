"""When the notifier wakes parked subscribers, on trio's virtual clock (pytest-trio's
``autojump_clock``): a pass waits ``notify_linger`` after the publish that started it,
so the publishes of that linger share it, and a publish after it starts the next."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from broadcaster import Event, HubConfig

from ._util import Broadcaster

LINGER = 1.0  # virtual seconds


async def _receipts(publish_at: list[float]) -> list[tuple[float, list[int]]]:
    """(virtual time, sequences) of each batch one parked subscriber receives when one
    event is published at each offset of *publish_at* (from a quiet start)."""
    got: list[tuple[float, list[int]]] = []
    config = HubConfig(heartbeat_interval=3600.0, notify_linger=LINGER)
    async with Broadcaster(config) as hub, hub.subscribe("a") as sub:
        await trio.sleep(10 * LINGER)  # quiet: no pass for longer than the linger
        start = trio.current_time()

        async def read() -> None:
            while sum(len(seqs) for _, seqs in got) < len(publish_at):
                items = await sub.receive_batch()
                seqs = [item.sequence for item in items if type(item) is Event]
                if seqs:
                    got.append((trio.current_time() - start, seqs))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()  # the reader is parked
            for offset in publish_at:
                await trio.sleep_until(start + offset)
                await hub.publish("a", "/e")
    return got


@pytest.mark.trio
async def test_a_publish_is_woken_after_the_linger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await _receipts([0.0]) == [(LINGER, [1])]


@pytest.mark.trio
async def test_publishes_within_the_linger_of_a_pass_share_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 1 starts a pass, LINGER later; 2 and 3 come within that linger and share it; 4
    # comes after it and starts the next
    got = await _receipts([0.0, 0.1, 0.2, 5.0])
    assert got == [(LINGER, [1, 2, 3]), (5.0 + LINGER, [4])]

"""A flood in one namespace must not starve delivery in another."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from broadcaster import Broadcaster, Event, Policy, PublishItem

pytestmark = pytest.mark.anyio

FLOOD_LIMIT = 2_000_000


async def test_flood_in_one_namespace_does_not_starve_another() -> None:
    async with Broadcaster() as hub:
        flooded = 0
        done = anyio.Event()

        async def flood() -> None:
            nonlocal flooded
            batch = [PublishItem("/flood", b"x" * 100)] * 100
            while not done.is_set() and flooded < FLOOD_LIMIT:
                await hub.publish_many("a", batch)
                flooded += len(batch)

        async def drain_a(task_status: anyio.abc.TaskStatus[None]) -> None:
            async with hub.subscribe("a", policy=Policy.drop_oldest(10_000)) as sub:
                task_status.started()
                while not done.is_set():
                    await sub.receive_batch(4096)

        received: list[tuple[int, int]] = []
        async with anyio.create_task_group() as tg:
            await tg.start(drain_a)
            async with hub.subscribe("b") as sub_b:
                tg.start_soon(flood)
                with anyio.fail_after(20):
                    while flooded < 20_000:  # the flood is in full swing
                        await anyio.lowlevel.checkpoint()
                for _ in range(5):
                    await hub.publish("b", "/quiet")
                    published_at = flooded
                    while True:
                        item = await sub_b.receive()
                        if isinstance(item, Event):
                            received.append((item.sequence, flooded - published_at))
                            break
                done.set()
                tg.cancel_scope.cancel()
        assert [seq for seq, _ in received] == [1, 2, 3, 4, 5]
        # each event of b arrived while a published at most a few batches more
        assert max(behind for _, behind in received) <= 1_000, received
        assert flooded < FLOOD_LIMIT

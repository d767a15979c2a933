"""A flood in one namespace must not starve delivery in another."""

from __future__ import annotations

import itertools

import anyio
import anyio.lowlevel
import pytest

from broadcaster import Event, HubConfig, Policy, PublishItem

from ._util import Broadcaster, open_all, until

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


@pytest.mark.memory_only(
    "slices of a batch are the memory log's; a durable log stores a batch "
    "in one append, awaited, so other tasks run meanwhile anyway"
)
async def test_a_huge_batch_yields_to_other_tasks_during_the_batch() -> None:
    """One PublishStream batch of 349,520 events stalled other namespaces for 1.4 s:
    a batch is checked and appended ``publish_yield_every`` events at a time, and its
    sequences stay consecutive even when another publisher of its namespace comes."""
    total, every = 20_000, HubConfig().publish_yield_every
    # no linger: trio's virtual clock stands still while tasks keep running
    async with Broadcaster(HubConfig(notify_linger=0)) as hub, hub.subscribe("b") as sub_b:
        done = anyio.Event()
        seqs: list[int] = []
        other: list[int] = []
        heads: list[int] = []
        b_seen_at: list[int] = []

        def head_of_a() -> int:
            ns = hub._namespaces.get("a")
            return ns.log.head if ns is not None else 0

        async def big() -> None:
            seqs.extend(await hub.publish_many("a", [PublishItem("/x")] * total))
            done.set()

        async def another_publisher_of_a() -> None:
            other.append(await hub.publish("a", "/other"))

        async def reader_of_b() -> None:
            async for item in sub_b:
                if isinstance(item, Event):
                    b_seen_at.append(head_of_a())
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(big)
            tg.start_soon(reader_of_b)
            started = False
            for _ in range(100_000):  # bounded: the batch takes about 2 turns per slice
                if done.is_set():
                    break
                heads.append(head_of_a())
                if heads[-1] and not started:
                    started = True
                    tg.start_soon(another_publisher_of_a)
                    await hub.publish("b", "/quiet")  # served in the middle
                    assert head_of_a() < total
                await anyio.lowlevel.checkpoint()
            assert done.is_set()
            await until(lambda: bool(other and b_seen_at))
            tg.cancel_scope.cancel()
        assert seqs == list(range(1, total + 1))
        assert other == [total + 1]  # after the batch, not inside it
        assert b_seen_at and b_seen_at[0] < total  # delivered while the batch went on
        steps = [b - a for a, b in itertools.pairwise(heads)]
        # one slice per turn of the batch (trio may run it twice between two of ours)
        assert max(steps) <= 2 * every
        assert len([h for h in heads if 0 < h < total]) >= total // every // 2


@pytest.mark.memory_only(
    "only a memory publish returns before the notifier runs, so that the "
    "test can watch the slices; a durable publish waits for the store while "
    "they are woken"
)
async def test_waking_thousands_of_subscribers_happens_in_slices() -> None:
    """Fan-out of one event to 5,000 streams held Health for 0.67-1.6 s: the notifier
    wakes ``wake_batch`` parked subscriptions, then lets other tasks run."""
    # no linger: trio's virtual clock stands still while tasks keep running
    async with Broadcaster(HubConfig(wake_batch=100, notify_linger=0)) as hub:
        woken = [0]

        class Waker:
            def set(self) -> None:
                woken[0] += 1

        subs = [hub.subscribe("a") for _ in range(2000)]
        await open_all(hub, *subs)
        for sub in subs:
            sub.park_waker(Waker())
        observed: list[int] = []
        served_at: list[int] = []
        await hub.publish("a", "/x")
        for _ in range(10_000):  # bounded: each turn lets the notifier wake one slice
            if woken[0] >= 2000:
                break
            observed.append(woken[0])
            if woken[0] > 0 and not served_at:
                await hub.publish("b", "/x")  # another namespace, in the middle
                served_at.append(woken[0])
            await anyio.lowlevel.checkpoint()
        assert woken[0] == 2000
        assert all(n % 100 == 0 for n in observed)
        assert served_at and served_at[0] < 2000
        assert len({n for n in observed if 0 < n < 2000}) >= 5
        for sub in subs:
            sub.close()

"""The hub under trio's own cancel scopes and nurseries, steps ordered with
``trio.testing.Sequencer`` (pytest-trio; virtual time with its ``autojump_clock``).

The core only uses anyio, so these are the cases where trio's semantics could differ
from asyncio's: cancellation delivered by a trio scope the hub never saw, a hub living
in a nursery that is cancelled, and the exact order in which a blocked publisher and a
reader take turns.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from broadcaster import (
    Ended,
    EndReason,
    Event,
    HubConfig,
    Policy,
    PublishItem,
)

from ._util import Broadcaster, drain, events_of, open_all

QUIET = HubConfig(heartbeat_interval=3600.0, notify_linger=0)


@pytest.mark.trio
async def test_a_trio_cancel_scope_unregisters_a_waiting_subscriber(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock,
) -> None:
    async with Broadcaster(QUIET) as hub:
        async with hub.subscribe("a") as other:
            scope = trio.CancelScope()

            async def reader(task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    async with hub.subscribe("a") as sub:
                        task_status.started()
                        await sub.receive()

            await nursery.start(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().namespaces["a"].subscribers == 2
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert scope.cancelled_caught
            assert hub.subscription_count == 1
            assert hub.statistics().namespaces["a"].subscribers == 1
            await hub.publish("a", "/x")
            assert [e.sequence for e in events_of(drain(other))] == [1]


@pytest.mark.trio
async def test_a_receive_timed_out_by_move_on_after_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Broadcaster(QUIET) as hub, hub.subscribe("a") as sub:
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:
            await sub.receive()
        assert scope.cancelled_caught and trio.current_time() - start == 2.0
        assert not sub.waiting  # parked no more
        await hub.publish("a", "/x")
        with trio.fail_after(1):
            item = await sub.receive()
        assert isinstance(item, Event) and item.sequence == 1


@pytest.mark.trio
async def test_a_publish_cancelled_while_blocked_publishes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A publisher waiting for a ``block`` subscriber's room, cancelled by its own trio
    scope: the event is not published (no sequence used), and the namespace's batch
    turn is released, so the next publisher goes through."""
    async with Broadcaster(QUIET) as hub:
        async with hub.subscribe("a", policy=Policy.block(1, timeout=5.0)) as sub:
            await hub.publish("a", "/x")  # fills the room
            with trio.move_on_after(1.0) as scope:
                await hub.publish("a", "/x")
            assert scope.cancelled_caught
            assert hub.statistics().namespaces["a"].head == 1
            assert [e.sequence for e in events_of(drain(sub))] == [1]
            start = trio.current_time()
            assert await hub.publish("a", "/x") == 2  # room again: no wait
            assert trio.current_time() == start


@pytest.mark.trio
@pytest.mark.memory_only("a batch goes in slice by slice into the memory log; a durable "
                         "log stores it in one append")
async def test_a_batch_is_all_or_none_under_a_trio_cancel_scope(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled while it is checked: nothing is published; cancelled while it is
    appended (slice by slice, other tasks running in between): all of it is."""
    total = 20 * HubConfig().publish_yield_every
    async with Broadcaster(QUIET) as hub:
        with trio.CancelScope() as scope:
            scope.cancel()
            await hub.publish_many("a", [PublishItem("/x")] * total)
        assert hub.namespace_names() == []

        async def big(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as own:
                task_status.started(own)
                await hub.publish_many("a", [PublishItem("/x")] * total)

        async with hub.subscribe("a", policy=Policy.drop_newest(total)) as sub:
            own = await nursery.start(big)
            for _ in range(100_000):  # bounded: a few turns per slice
                if hub.statistics().namespaces["a"].head:
                    break
                await trio.lowlevel.checkpoint()
            head = hub.statistics().namespaces["a"].head
            assert 0 < head < total  # in the middle of the batch
            own.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().namespaces["a"].head == total
            assert [e.sequence for e in events_of(drain(sub))] == list(range(1, total + 1))


@pytest.mark.trio
async def test_cancelling_the_nursery_that_runs_the_hub_ends_its_subscribers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hub's tasks live in the nursery of whoever runs it: cancelling that nursery
    closes the hub, and a subscriber in another task gets what was published, then
    ``Ended(hub_closed)``; iteration stops."""
    got: list[object] = []
    async with trio.open_nursery() as outer:
        hub_scope = trio.CancelScope()
        ready = trio.Event()
        holder: list[Broadcaster] = []

        async def run_hub() -> None:
            with hub_scope:
                async with Broadcaster(QUIET) as hub:
                    holder.append(hub)
                    ready.set()
                    await trio.sleep_forever()

        outer.start_soon(run_hub)
        await ready.wait()
        hub = holder[0]
        sub = hub.subscribe("a")
        await open_all(hub, sub)
        await hub.publish("a", "/x")

        async def consume() -> None:
            async for item in sub:
                got.append(item)
            got.append("done")

        outer.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        hub_scope.cancel()
    assert [type(i) for i in got] == [Event, Ended, str]
    assert got[1] == Ended(EndReason.HUB_CLOSED, got[1].message)  # type: ignore[union-attr]


@pytest.mark.trio
async def test_a_blocked_publisher_resumes_exactly_when_the_subscriber_reads(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock,
) -> None:
    """Step by step: the publisher blocks on a full ``block`` subscriber (step 0), the
    subscriber reads one event (step 1), the publisher's event goes in at once (step 2):
    no time passes, nothing is dropped, sequences stay consecutive."""
    seq = trio.testing.Sequencer()
    published: list[int] = []
    async with Broadcaster(QUIET) as hub:
        async with hub.subscribe("a", policy=Policy.block(2, timeout=5.0)) as sub:
            for _ in range(2):
                await hub.publish("a", "/x")
            start = trio.current_time()

            async def publisher() -> None:
                async with seq(0):
                    pass
                published.append(await hub.publish("a", "/x"))  # waits for room
                async with seq(2):
                    assert published == [3]

            nursery.start_soon(publisher)
            async with seq(1):
                await trio.testing.wait_all_tasks_blocked()
                assert published == []  # blocked
                [first] = sub.receive_batch_nowait(1)
                assert isinstance(first, Event) and first.sequence == 1
            async with seq(3):
                assert trio.current_time() == start
                items = drain(sub)
            assert [e.sequence for e in events_of(items)] == [2, 3]
            assert hub.statistics().namespaces["a"].dropped == {}

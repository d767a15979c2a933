"""The server-wide budget of retained bytes: oldest first across namespaces, readers
told what they lost, and memory really bounded (both backends)."""

from __future__ import annotations

import gc
import random
import tracemalloc
import weakref

import pytest

from broadcaster import (
    DropNotice,
    DropReason,
    Event,
    HubConfig,
    PayloadTooLarge,
    PublishItem,
    ResyncNotice,
    ResyncReason,
)

from ._util import Broadcaster, drain, events_of

pytestmark = pytest.mark.anyio


async def _size_of_one(payload: bytes) -> int:
    async with Broadcaster() as probe:
        await probe.publish("probe", "/x", payload)
        return probe._namespaces["probe"].log.read(1, 2)[0].size


@pytest.mark.memory_only(
    "max_retained_bytes bounds the memory log; a durable log keeps its "
    "events in the store and bounds the ones it caches itself"
)
async def test_the_oldest_events_go_first_across_namespaces() -> None:
    size = await _size_of_one(b"p" * 100)
    async with Broadcaster(HubConfig(max_retained_bytes=10 * size)) as hub:
        await hub.publish_many("a", [PublishItem("/x", b"p" * 100)] * 6)
        async with hub.subscribe("a", since=0) as replaying:
            [first] = events_of(replaying.receive_batch_nowait(1))
            assert first.sequence == 1
            await hub.publish_many("b", [PublishItem("/x", b"p" * 100)] * 4)
            assert hub.statistics().budget_trimmed_events == 0  # exactly full
            await hub.publish_many("b", [PublishItem("/x", b"p" * 100)] * 3)
            stats = hub.statistics()
            # the three oldest were a's 1, 2 and 3, whatever b was publishing
            assert (stats.namespaces["a"].oldest, stats.namespaces["b"].oldest) == (4, 1)
            assert stats.retained_bytes == 10 * size == stats.max_retained_bytes
            assert (stats.budget_trimmed_events, stats.budget_trimmed_bytes) == (3, 3 * size)
            # the reader in the middle of its replay is told what it lost, then goes on
            items = drain(replaying)
            assert items[0] == DropNotice("a", 2, 2, 3, DropReason.RETENTION)
            assert [e.sequence for e in events_of(items)] == [4, 5, 6]
        # a client resuming from before the trim is told to resync
        async with hub.subscribe("a", since=1, epoch=hub.epoch) as late:
            items = drain(late)
            assert items[0] == ResyncNotice("a", 1, 4, ResyncReason.COMPACTED, hub.epoch)
        # b lost nothing, and keeps publishing in the budget
        await hub.publish_many("b", [PublishItem("/x", b"p" * 100)] * 20)
        stats = hub.statistics()
        assert stats.retained_bytes <= stats.max_retained_bytes
        assert stats.namespaces.keys() == {"a", "b"}
        assert stats.namespaces["a"].retained_events == 0


async def test_an_event_larger_than_the_budget_is_refused() -> None:
    async with Broadcaster(HubConfig(max_retained_bytes=1000)) as hub:
        with pytest.raises(PayloadTooLarge, match=r"^payload: event of \d+ bytes exceeds the "
                                                  r"namespace's retained bytes \(1000\)"):
            await hub.publish("a", "/x", b"x" * 900)
        assert hub.namespace_names() == []


@pytest.mark.memory_only(
    "max_retained_bytes bounds the memory log; a durable log keeps its "
    "events in the store and bounds the ones it caches itself"
)
async def test_the_budget_bounds_the_memory_of_retained_events() -> None:
    """Many namespaces filling their (default, 64 MiB) retention used to take ~71 MiB of
    RSS each with nothing bounding the sum. Mixed events, labels, and an edge caching a
    serialized copy of every delivered event: what stays allocated is within the budget."""
    budget = 4 * 1024 * 1024
    rng = random.Random(7)
    copies: weakref.WeakKeyDictionary[Event, bytes] = weakref.WeakKeyDictionary()
    async with Broadcaster(HubConfig(max_retained_bytes=budget)) as hub:
        async with hub.subscribe(None) as edge:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(60):
                    for ns in range(30):
                        items = [
                            PublishItem("/tasks/exit", bytes(rng.choice((0, 40, 300, 2000))),
                                        "containerd.events.TaskExit",
                                        {"pod": f"p{rng.randrange(10**6)}"} if i % 3 else {})
                            for i in range(8)
                        ]
                        await hub.publish_many(f"ns{ns}", items)
                    for item in drain(edge):  # an edge serializing what it delivers
                        if isinstance(item, Event):
                            copies[item] = copy = bytes(len(item.payload) + 60)
                            hub.account_cached(item, len(copy) + 100)  # + the dict entry
                del items, item
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            stats = hub.statistics()
            assert stats.budget_trimmed_events > 10_000  # the budget did the trimming
            assert stats.retained_bytes <= budget
            # per-namespace state, list slots awaiting compaction, cursors: under 1 MiB
            assert grown < budget + 1024 * 1024, f"{grown} bytes for a budget of {budget}"

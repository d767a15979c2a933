"""Overflow policies: exact drop ranges, in-band notices, counted drops (both backends;
the timing ones run on trio's virtual clock)."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from broadcaster import (
    DropNotice,
    DropReason,
    Ended,
    EndReason,
    HubConfig,
    InvalidPolicy,
    NamespaceConfig,
    Policy,
    PolicyKind,
    PublishItem,
)

from ._util import Broadcaster, drain, events_of, notices_of


async def publish_n(hub: Broadcaster, ns: str, n: int) -> None:
    for _ in range(n):
        await hub.publish(ns, "/x", b"p")


@pytest.mark.anyio
async def test_drop_newest_reports_the_exact_range() -> None:
    async with Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_newest(3)) as sub:
        await publish_n(hub, "a", 10)
        items = drain(sub)
        assert items[0] == DropNotice("a", 7, 4, 10, DropReason.OVERFLOW_NEWEST)
        assert [e.sequence for e in events_of(items)] == [1, 2, 3]
        await publish_n(hub, "a", 2)
        assert [e.sequence for e in events_of(drain(sub))] == [11, 12]
        assert hub.statistics().namespaces["a"].dropped == {"drop_newest": 7}


@pytest.mark.anyio
async def test_drop_newest_room_appears_only_as_the_subscriber_reads() -> None:
    async with Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_newest(3)) as sub:
        await publish_n(hub, "a", 5)  # 1-3 fit, 4-5 dropped
        first = sub.receive_batch_nowait(1)
        assert first[0] == DropNotice("a", 2, 4, 5, DropReason.OVERFLOW_NEWEST)
        assert [e.sequence for e in events_of(first)] == [1]
        await publish_n(hub, "a", 2)  # one slot free: 6 fits, 7 dropped
        items = drain(sub)
        assert items[0] == DropNotice("a", 1, 7, 7, DropReason.OVERFLOW_NEWEST)
        assert [e.sequence for e in events_of(items)] == [2, 3, 6]


@pytest.mark.anyio
async def test_drop_oldest_keeps_the_newest() -> None:
    async with Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_oldest(3)) as sub:
        await publish_n(hub, "a", 10)
        items = drain(sub)
        assert items == [
            DropNotice("a", 7, 1, 7, DropReason.OVERFLOW_OLDEST),
            *events_of(items),
        ]
        assert [e.sequence for e in events_of(items)] == [8, 9, 10]


@pytest.mark.anyio
async def test_byte_bound() -> None:
    async with Broadcaster() as hub:
        await hub.publish("a", "/x", b"p")
        size = hub._namespaces["a"].log.read(1, 2)[0].size
        async with hub.subscribe("a", policy=Policy.drop_oldest(100, max_bytes=3 * size)) as sub:
            await publish_n(hub, "a", 5)
            items = drain(sub)
        assert notices_of(items) == [DropNotice("a", 2, 2, 3, DropReason.OVERFLOW_OLDEST)]
        assert [e.sequence for e in events_of(items)] == [4, 5, 6]


@pytest.mark.anyio
async def test_drop_notice_counts_only_matching_events() -> None:
    async with Broadcaster() as hub:
        policy = Policy.drop_newest(1)
        async with hub.subscribe("a", filters=['topic=="/keep"'], policy=policy) as sub:
            for i in range(6):
                await hub.publish("a", "/keep" if i % 2 == 0 else "/skip")
            items = drain(sub)
        # /keep at 1, 3, 5: 1 kept, 3 and 5 dropped
        assert items[0] == DropNotice("a", 2, 3, 5, DropReason.OVERFLOW_NEWEST)
        assert [e.sequence for e in events_of(items)] == [1]


@pytest.mark.anyio
async def test_slow_subscriber_delays_no_one() -> None:
    async with (
        Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_oldest(10)) as slow,
        hub.subscribe("a", policy=Policy.drop_oldest(100_000)) as fast,
    ):
        got = 0
        for _ in range(100):
            await publish_n(hub, "a", 10)
            got += len(events_of(drain(fast)))
        assert got == 1000
        items = drain(slow)
        assert items[0] == DropNotice("a", 990, 1, 990, DropReason.OVERFLOW_OLDEST)
        assert len(events_of(items)) == 10


@pytest.mark.trio
async def test_disconnect_evicts_the_slow_subscriber(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Evicted by the sweep, within ``overflow_check_interval``, though it never reads."""
    config = HubConfig(overflow_check_interval=0.25)
    async with Broadcaster(config) as hub, hub.subscribe("a", policy=Policy.disconnect(2)) as sub:
        other = hub.subscribe("a")
        async with other:
            await publish_n(hub, "a", 3)  # the sweeps run at 0.25, 0.5, ...
            await anyio.sleep(0.24)
            assert hub.subscription_count == 2
            await anyio.sleep(0.02)
            assert hub.subscription_count == 1
            assert len(events_of(drain(other))) == 3
        items = drain(sub)
        assert len(items) == 1 and isinstance(items[0], Ended)
        assert items[0].reason is EndReason.SLOW_CONSUMER
        with pytest.raises(anyio.EndOfStream):
            sub.receive_batch_nowait()
        assert hub.statistics().namespaces["a"].evicted == {"slow_consumer": 1}


@pytest.mark.trio
async def test_block_waits_for_the_timeout_then_falls_back(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster() as hub:
        policy = Policy.block(2, timeout=1.5, fallback="drop_newest")
        async with hub.subscribe("a", policy=policy) as sub:
            await publish_n(hub, "a", 2)
            start = anyio.current_time()
            await hub.publish("a", "/x")  # no room: waits, then gives up
            assert anyio.current_time() - start == pytest.approx(1.5)
            items = drain(sub)
            assert items[0] == DropNotice("a", 1, 3, 3, DropReason.BLOCK_TIMEOUT)
            assert [e.sequence for e in events_of(items)] == [1, 2]


@pytest.mark.trio
async def test_block_resumes_as_soon_as_the_subscriber_reads(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe("a", policy=Policy.block(2, timeout=5)) as sub:
            await publish_n(hub, "a", 2)

            async def read_later() -> None:
                await anyio.sleep(0.25)
                await sub.receive_batch(1)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_later)
                start = anyio.current_time()
                await hub.publish("a", "/x")
                assert anyio.current_time() - start == pytest.approx(0.25)
            items = drain(sub)
            assert notices_of(items) == []
            assert [e.sequence for e in events_of(items)] == [2, 3]


@pytest.mark.trio
async def test_block_takes_a_batch_larger_than_the_room_as_room_appears(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe("a", policy=Policy.block(64, timeout=5)) as sub:
            got: list[int] = []

            async def reader() -> None:
                while len(got) < 250:
                    await anyio.sleep(0.01)
                    got.extend(e.sequence for e in events_of(await sub.receive_batch(30)))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                seqs = await hub.publish_many("a", [PublishItem("/x")] * 250)
            assert seqs == list(range(1, 251))
            assert got == seqs
            assert hub.statistics().namespaces["a"].dropped == {}


@pytest.mark.trio
async def test_a_stuck_block_subscriber_holds_each_publish_at_most_the_namespace_maximum(
    autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(
        default_namespace=NamespaceConfig(max_block_timeout=0.5),
        namespaces={"quiet": NamespaceConfig(allow_block=False)},
    )
    async with Broadcaster(config) as hub:
        with pytest.raises(InvalidPolicy, match=r"^policy\.block_timeout: 1e\+09 s exceeds "
                                                r"the maximum of 0\.5 s in namespace 'a' "
                                                r"\(max_block_timeout\)"):
            hub.subscribe("a", policy=Policy.block(1, timeout=1e9)).open()
        with pytest.raises(InvalidPolicy, match=r"^policy\.kind: block is not allowed in "
                                                r"namespace 'quiet' \(allow_block = false\)"):
            hub.subscribe(["a", "quiet"], policy=Policy.block(1, timeout=0.5)).open()
        assert hub.namespace_names() == [] and hub.subscription_count == 0
        # an all-namespaces subscription asking for more is clamped where it meets a
        # namespace: 0.5 s in "a", and its fallback (no waiting) in "quiet"
        async with hub.subscribe(None, policy=Policy.block(1, timeout=5)) as stuck:
            for ns in ("a", "quiet"):
                await hub.publish(ns, "/x")  # creates the namespace and fills the room
            assert stuck.cursors["a"].policy.block_timeout == 0.5
            assert stuck.cursors["quiet"].policy.kind is PolicyKind.DROP_NEWEST
            start = anyio.current_time()
            await hub.publish("quiet", "/x")
            assert anyio.current_time() == start
            for _ in range(3):
                await hub.publish("a", "/x")
            assert anyio.current_time() - start == pytest.approx(1.5)
            items = drain(stuck)
            assert DropNotice("a", 3, 2, 4, DropReason.BLOCK_TIMEOUT) in items
            assert DropNotice("quiet", 1, 2, 2, DropReason.OVERFLOW_NEWEST) in items


@pytest.mark.trio
async def test_block_falling_back_to_disconnect_evicts_and_frees_the_publisher(
    autojump_clock: trio.testing.MockClock
) -> None:
    """The publisher's room check used to evict inside its loop over the blocking
    cursors ("Set changed size during iteration" in publish)."""
    async with Broadcaster() as hub:
        gone = hub.subscribe("a", policy=Policy.block(2, timeout=0.5, fallback="disconnect"))
        stays = hub.subscribe("a", policy=Policy.block(2, timeout=0.5))
        async with gone, stays:
            start = anyio.current_time()
            await publish_n(hub, "a", 3)  # the third waits 0.5 s, then goes in
            assert anyio.current_time() - start == pytest.approx(0.5)
            await hub.publish("a", "/x")  # "gone" is over its bound: evicted here
            assert anyio.current_time() - start == pytest.approx(1.0)  # "stays" is full
            assert hub.subscription_count == 1
            items = drain(gone)
            assert [type(i) for i in items] == [Ended]
            assert items[0].reason is EndReason.SLOW_CONSUMER  # type: ignore[union-attr]
            items = drain(stays)
            assert notices_of(items) == [DropNotice("a", 2, 3, 4, DropReason.BLOCK_TIMEOUT)]
            assert [e.sequence for e in events_of(items)] == [1, 2]
            assert hub.statistics().namespaces["a"].evicted == {"slow_consumer": 1}


@pytest.mark.trio
async def test_retry_admits_within_the_backoff_window_then_drops(
    autojump_clock: trio.testing.MockClock
) -> None:
    policy = Policy.retry(2, initial_backoff=0.1, multiplier=2, max_attempts=3, jitter=0)
    assert policy.retry_delays(0.5) == pytest.approx(0.7)
    async with Broadcaster(HubConfig(overflow_check_interval=0.05)) as hub:
        async with hub.subscribe("a", policy=policy) as sub:
            await publish_n(hub, "a", 4)  # 1, 2 buffered; 3, 4 wait for a retry
            await anyio.sleep(0.5)
            items = drain(sub)
            assert notices_of(items) == []
            assert [e.sequence for e in events_of(items)] == [1, 2, 3, 4]
            await publish_n(hub, "a", 4)  # 5, 6 buffered; 7, 8 wait and expire
            await anyio.sleep(1.0)
            # counted by the sweep before the subscriber reads
            assert hub.statistics().namespaces["a"].dropped == {"retry_exhausted": 2}
            items = drain(sub)
            assert items[0] == DropNotice("a", 2, 7, 8, DropReason.RETRY_EXHAUSTED)
            assert [e.sequence for e in events_of(items)] == [5, 6]


@pytest.mark.trio
async def test_a_retry_notice_never_spans_events_still_waiting(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Events that expire and arrivals refused by a full retry queue, dropped in one
    settle, were reported as one notice spanning the events still waiting between them,
    which were then delivered after it: a notice's range holds only what it reports."""
    policy = Policy.retry(4, initial_backoff=0.1, max_backoff=0.1, max_attempts=1, jitter=0)
    async with Broadcaster(HubConfig(overflow_check_interval=10.0)) as hub:
        async with hub.subscribe("a", policy=policy) as sub:
            await publish_n(hub, "a", 6)
            hub.statistics()  # a scrape settles it: 1-4 buffered, 5-6 wait until 0.1
            await anyio.sleep(0.05)
            await publish_n(hub, "a", 2)
            hub.statistics()  # 7-8 wait until 0.15
            await anyio.sleep(0.07)
            await publish_n(hub, "a", 3)  # 9-10 wait until 0.22; the queue is full for 11
            items = drain(sub)  # 5-6 expired; room for 7-10 once 1-4 are read
    assert notices_of(items) == [DropNotice("a", 2, 5, 6, DropReason.RETRY_EXHAUSTED),
                                 DropNotice("a", 1, 11, 11, DropReason.RETRY_EXHAUSTED)]
    assert [e.sequence for e in events_of(items)] == [1, 2, 3, 4, 7, 8, 9, 10]


@pytest.mark.trio
async def test_drops_are_counted_before_the_subscriber_reads(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_oldest(2)):
        await publish_n(hub, "a", 5)
        assert hub.statistics().namespaces["a"].dropped == {"drop_oldest": 3}

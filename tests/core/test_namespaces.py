"""Namespaces and cursors as shared resources: a refused request leaves nothing behind,
idle namespaces go away (their numbering stays honest), and server-wide bounds hold."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest
import trio.testing

from broadcaster import (
    DropNotice,
    DropReason,
    Ended,
    EndReason,
    Event,
    HubConfig,
    InvalidPolicy,
    NamespaceConfig,
    PayloadTooLarge,
    Policy,
    PublishItem,
    QuotaExceeded,
    ResyncNotice,
    ResyncReason,
    Retention,
)

from ._util import Broadcaster, drain, events_of, open_all


@pytest.mark.anyio
async def test_a_refused_subscription_creates_no_namespace() -> None:
    """One Add naming 1,025 namespaces used to leave 1,024 behind, locking everyone out."""
    async with Broadcaster() as hub:
        names = [f"ns{i}" for i in range(1025)]
        with pytest.raises(QuotaExceeded, match=r"^namespaces: creating 1025 new namespaces "
                                                r"would exceed the hub's maximum of 1024 "
                                                r"namespaces \(0 in use;.*\): raise "
                                                r"max_namespaces \(\[hub\] max_namespaces"):
            hub.subscribe(names).open()
        assert hub.namespace_names() == []
        # a policy that one of the namespaces refuses: refused before anything exists
        config = HubConfig(namespaces={"strict": NamespaceConfig(
            max_policy_events=10, default_policy=Policy.drop_oldest(10))})
    async with Broadcaster(config) as hub:
        with pytest.raises(InvalidPolicy, match=r"^policy\.max_events: 100 exceeds 10"):
            hub.subscribe(["a", "b", "strict"], policy=Policy.drop_oldest(100)).open()
        assert hub.namespace_names() == [] and hub.statistics().cursors == 0
        # everyone else is unaffected
        async with hub.subscribe("k8s.io") as sub:
            assert await hub.publish("k8s.io", "/tasks/exit") == 1
            assert [e.sequence for e in events_of(drain(sub))] == [1]


@pytest.mark.anyio
async def test_a_refused_publish_creates_no_namespace() -> None:
    config = HubConfig(
        max_namespaces=2,
        default_namespace=NamespaceConfig(max_publish_rate=10.0, publish_burst=3,
                                          max_payload_bytes=100),
    )
    async with Broadcaster(config) as hub:
        with pytest.raises(QuotaExceeded, match="over its rate"):
            await hub.publish_many("a", [PublishItem("/x")] * 4)  # more than the burst
        with pytest.raises(PayloadTooLarge):
            await hub.publish_many("a", [PublishItem("/x"), PublishItem("/x", b"x" * 101)])
        assert await hub.publish_many("a", []) == []
        assert hub.namespace_names() == []
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        with pytest.raises(QuotaExceeded, match=r"^namespace: creating 'c' would exceed the "
                                                r"hub's maximum of 2 namespaces \(2 in use"):
            await hub.publish("c", "/x")
        assert hub.namespace_names() == ["a", "b"]


@pytest.mark.trio
async def test_the_publish_rate_refills_on_the_clock(
    autojump_clock: trio.testing.MockClock
) -> None:
    """A token bucket: the burst at once, then one event per 1/rate seconds, never more
    than the burst saved up."""
    config = HubConfig(namespaces={"small": NamespaceConfig(max_publish_rate=10.0,
                                                            publish_burst=3)})
    async with Broadcaster(config) as hub:
        for _ in range(3):
            await hub.publish("small", "/x")
        with pytest.raises(QuotaExceeded, match="over its rate of 10 events/s"):
            await hub.publish("small", "/x")
        await anyio.sleep(0.1)
        await hub.publish("small", "/x")
        with pytest.raises(QuotaExceeded, match="over its rate"):
            await hub.publish("small", "/x")
        await anyio.sleep(60)
        for _ in range(3):
            await hub.publish("small", "/x")
        with pytest.raises(QuotaExceeded, match="over its rate"):
            await hub.publish("small", "/x")
        assert hub.statistics().namespaces["small"].published == 7


#: idle namespaces (on trio's virtual clock)
IDLE = HubConfig(
    heartbeat_interval=10.0,
    max_missed_heartbeats=100,
    namespace_idle_timeout=60.0,
    max_namespaces=3,
    default_namespace=NamespaceConfig(retention=Retention(max_age=5.0)),
    namespaces={"configured": NamespaceConfig(retention=Retention(max_age=5.0))},
)


@pytest.mark.trio
async def test_idle_namespaces_are_removed_and_their_numbering_continues(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster(IDLE) as hub:
        for _ in range(3):
            await hub.publish("tmp", "/x")
        await hub.publish("configured", "/x")
        async with hub.subscribe(None) as everything:
            async with hub.subscribe("pinned"):  # a subscription naming it holds it
                with pytest.raises(QuotaExceeded, match="maximum of 3 namespaces"):
                    await hub.publish("third", "/x")
                # events age out at 10 s; unused from then on, removed at 70 s
                await anyio.sleep(69.0)
                assert hub.namespace_names() == ["configured", "pinned", "tmp"]
                await anyio.sleep(2.0)
                assert hub.namespace_names() == ["configured", "pinned"]
                assert hub.statistics().namespaces_removed == 1
                # the limit counts live namespaces only: there is room again
                await hub.publish("third", "/x")
            # unused since the heartbeat at 80 s: removed at 140 s; "third" stays
            # while "everything" has not been told of its event (aged out unread)
            await anyio.sleep(70.0)
            assert hub.namespace_names() == ["configured", "third"]
            assert hub.statistics().cursors == 2  # everything's, in both
            # "tmp" comes back: its numbering continues, and the all-namespaces
            # subscription meets it again
            assert await hub.publish("tmp", "/x") == 4
            assert drain(everything) == [
                DropNotice("third", 1, 1, 1, DropReason.RETENTION),
                hub._namespaces["tmp"].log.read(4, 5)[0],
            ]
        # a client that saw 3 resumes exactly; one that saw 2 is told it missed 3
        async with hub.subscribe("tmp", since=3, epoch=hub.epoch) as exact:
            assert [type(i) for i in drain(exact)] == [Event]
        async with hub.subscribe("tmp", since=2, epoch=hub.epoch) as behind:
            items = drain(behind)
            assert items[0] == ResyncNotice("tmp", 2, 4, ResyncReason.COMPACTED, hub.epoch)


@pytest.mark.trio
async def test_undelivered_events_of_an_all_namespaces_subscriber_keep_a_namespace(
    autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(heartbeat_interval=10.0, max_missed_heartbeats=100,
                       namespace_idle_timeout=20.0,
                       default_namespace=NamespaceConfig(retention=Retention(max_age=5.0)))
    async with Broadcaster(config) as hub, hub.subscribe(None) as lagging:
        await hub.publish("tmp", "/x")
        await anyio.sleep(100.0)  # retention dropped it long ago; lagging never read
        assert hub.namespace_names() == ["tmp"]
        assert drain(lagging) == [DropNotice("tmp", 1, 1, 1, DropReason.RETENTION)]
        await anyio.sleep(15.0)  # it has nothing left there: removed at the next beat
        assert hub.namespace_names() == []


@pytest.mark.trio
@pytest.mark.memory_only(
    "the heads of removed namespaces are remembered for memory logs; a durable log keeps "
    "its own head"
)
async def test_when_the_memory_of_heads_is_full_resumes_are_told(
    autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(heartbeat_interval=10.0, namespace_idle_timeout=20.0,
                       namespace_head_memory=1,
                       default_namespace=NamespaceConfig(retention=Retention(max_age=5.0)))
    async with Broadcaster(config) as hub:
        await hub.publish_many("x", [PublishItem("/x")] * 5)
        await hub.publish_many("y", [PublishItem("/x")] * 2)
        await anyio.sleep(40.0)
        assert hub.namespace_names() == []  # x forgotten (head 5), y remembered (2)
        assert await hub.publish("y", "/x") == 3
        # x and any namespace never seen start above the highest head forgotten
        assert await hub.publish("x", "/x") == 6
        assert await hub.publish("z", "/x") == 6
        async with hub.subscribe("x", since=5, epoch=hub.epoch) as exact:
            assert [e.sequence for e in events_of(drain(exact))] == [6]
        async with hub.subscribe("x", since=3, epoch=hub.epoch) as behind:
            items = drain(behind)
            assert items[0] == ResyncNotice("x", 3, 6, ResyncReason.COMPACTED, hub.epoch)
            assert [e.sequence for e in events_of(items)] == [6]
        # never silently wrong, at worst a resync that was not needed
        async with hub.subscribe("z", since=0, epoch=hub.epoch) as fresh:
            items = drain(fresh)
            assert items[0] == ResyncNotice("z", 0, 6, ResyncReason.COMPACTED, hub.epoch)


@pytest.mark.anyio
async def test_the_cursor_bound_refuses_before_creating_anything() -> None:
    async with Broadcaster(HubConfig(max_cursors=5)) as hub:
        async with hub.subscribe(["a", "b", "c"]):
            with pytest.raises(QuotaExceeded, match=r"^namespaces: the hub holds 3 of its "
                                                    r"maximum of 5 cursors .* needs 3: .*"
                                                    r"raise max_cursors \(\[hub\] max_cursors"):
                hub.subscribe(["d", "e", "f"]).open()
            assert hub.namespace_names() == ["a", "b", "c"]
            with pytest.raises(QuotaExceeded, match="needs 3"):
                hub.subscribe(None).open()  # one cursor per existing namespace
            async with hub.subscribe(["a", "b"]):
                assert hub.statistics().cursors == 5
        assert hub.statistics().cursors == 0


@pytest.mark.anyio
async def test_all_namespace_subscriptions_meeting_a_new_namespace_over_the_bound() -> None:
    """The publisher that creates a namespace is never refused because of subscribers:
    the newest all-namespaces subscriptions that no longer fit are ended instead."""
    async with Broadcaster(HubConfig(max_cursors=5)) as hub:
        async with hub.subscribe("a"), hub.subscribe(None) as older, hub.subscribe(None) as newer:
            assert await hub.publish("b", "/x") == 1  # 1 + 2 + 2 cursors: full
            assert hub.statistics().cursors == 5
            assert await hub.publish("c", "/x") == 1
            items = drain(newer)
            assert isinstance(items[-1], Ended) and items[-1].reason is EndReason.CURSOR_LIMIT
            assert "maximum of 5 cursors" in items[-1].message
            assert [(e.namespace, e.sequence) for e in events_of(drain(older))] == [
                ("b", 1), ("c", 1)]
            assert hub.statistics().cursors == 4
            assert hub.statistics().namespaces["a"].evicted == {"cursor_limit": 1}


@pytest.mark.anyio
async def test_an_idle_cursor_is_small() -> None:
    """1,000 all-namespace subscriptions over 1,000 namespaces took 1.07 GiB: a cursor
    with nothing buffered now holds no containers (and Subscription has __slots__)."""
    async with Broadcaster() as hub:
        for i in range(100):
            await hub.publish(f"ns{i}", "/x")
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            subs = [hub.subscribe(None) for _ in range(100)]
            for sub in subs:
                sub.open()
            per_cursor = (tracemalloc.get_traced_memory()[0] - before) / 10_000
        finally:
            tracemalloc.stop()
        assert hub.statistics().cursors == 10_000
        assert per_cursor < 320, f"{per_cursor:.0f} bytes per idle cursor"
        for sub in subs:
            sub.close()


@pytest.mark.anyio
async def test_a_scrape_settles_only_cursors_that_have_drops_due() -> None:
    """A scrape used to settle every cursor: with 200,000 idle cursors, 0.25 s of the
    event loop each time, and a buffer allocated for each. Now a cursor whose unread
    events all fit its buffer is only looked at; one with drops due is settled, and its
    drops are counted before its subscriber reads, as before."""
    async with Broadcaster() as hub:
        roomy = [hub.subscribe("a") for _ in range(100)]
        await open_all(hub, *roomy)
        async with hub.subscribe("a", policy=Policy.drop_oldest(2)) as tight:
            for _ in range(5):
                await hub.publish("a", "/x")
            stats = hub.statistics().namespaces["a"]
            assert stats.dropped == {"drop_oldest": 3}
            assert stats.max_lag == 5
            assert all(sub.cursors["a"].buf == () for sub in roomy)  # untouched
            assert len(tight.cursors["a"].buf) == 2
            assert hub.statistics().namespaces["a"].max_lag == 5  # unchanged: cached
            assert [e.sequence for e in events_of(drain(roomy[0]))] == [1, 2, 3, 4, 5]
        for sub in roomy:
            sub.close()
        assert hub.statistics().namespaces["a"].max_lag == 0


@pytest.mark.anyio
async def test_statistics_sliced_lets_other_tasks_run_and_counts_the_same() -> None:
    """A scrape or a Stats call settles the cursors in slices: another task runs between
    them (a walk over 250,000 cursors held the loop 0.1-0.5 s), and the figures are
    those of :meth:`statistics`, drops and evictions included."""
    config = HubConfig(default_namespace=NamespaceConfig(max_subscriptions=5000))
    async with Broadcaster(config) as hub:
        roomy = [hub.subscribe(("a", "b")) for _ in range(700)]
        await open_all(hub, *roomy)
        async with hub.subscribe("a", policy=Policy.drop_oldest(2)) as tight, \
                hub.subscribe("b", policy=Policy.disconnect(2)) as doomed:
            for _ in range(5):
                await hub.publish("a", "/x")
                await hub.publish("b", "/x")
            turns = 0

            async def other() -> None:
                nonlocal turns
                while True:
                    turns += 1
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
                await anyio.lowlevel.checkpoint()
                before = turns
                # slice 0: a yield after every step of 256 cursors and every namespace
                stats = await hub.statistics_sliced(slice_seconds=0)
                tg.cancel_scope.cancel()
            assert turns - before >= 5  # 1,402 cursors in 2 namespaces: 6+ slices
            a, b = stats.namespaces["a"], stats.namespaces["b"]
            assert a.dropped == {"drop_oldest": 3} and a.max_lag == 5
            assert doomed.end_reason is not None
            assert doomed.end_reason.reason is EndReason.SLOW_CONSUMER
            assert b.evicted == {"slow_consumer": 1}
            assert len(tight.cursors["a"].buf) == 2
            assert hub.statistics().namespaces == stats.namespaces
        for sub in roomy:
            sub.close()

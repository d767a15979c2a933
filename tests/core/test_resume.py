"""Resume with since=, retention by count, bytes and age."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from broadcaster import (
    DropNotice,
    DropReason,
    HubConfig,
    NamespaceConfig,
    Policy,
    ResyncNotice,
    ResyncReason,
    Retention,
)

from ._util import Broadcaster, drain, events_of


def config(**retention: float) -> HubConfig:
    return HubConfig(default_namespace=NamespaceConfig(retention=Retention(**retention)))  # type: ignore[arg-type]


async def publish_n(hub: Broadcaster, ns: str, n: int) -> None:
    for _ in range(n):
        await hub.publish(ns, "/x", b"p")


@pytest.mark.anyio
async def test_resume_inside_retention_replays_then_goes_live() -> None:
    async with Broadcaster() as hub:
        await publish_n(hub, "a", 10)
        async with hub.subscribe("a", since=4, epoch=hub.epoch_of("a")) as sub:
            assert [e.sequence for e in events_of(drain(sub))] == [5, 6, 7, 8, 9, 10]
            await publish_n(hub, "a", 1)
            assert [e.sequence for e in events_of(drain(sub))] == [11]


@pytest.mark.anyio
async def test_resume_at_head_replays_nothing() -> None:
    async with Broadcaster() as hub:
        await publish_n(hub, "a", 3)
        async with hub.subscribe("a", since=3) as sub:
            assert drain(sub) == []
            await publish_n(hub, "a", 1)
            assert [e.sequence for e in events_of(drain(sub))] == [4]


@pytest.mark.anyio
async def test_replay_is_not_cut_by_the_overflow_policy() -> None:
    async with Broadcaster() as hub:
        await publish_n(hub, "a", 50)
        async with hub.subscribe("a", since=0, policy=Policy.drop_oldest(2)) as sub:
            items = drain(sub)
        assert [e.sequence for e in events_of(items)] == list(range(1, 51))


@pytest.mark.anyio
async def test_resume_older_than_retention_gets_a_resync_notice() -> None:
    async with Broadcaster(config(max_events=5)) as hub:
        await publish_n(hub, "a", 10)
        async with hub.subscribe("a", since=2) as sub:
            items = drain(sub)
        assert items[0] == ResyncNotice("a", 2, 6, ResyncReason.COMPACTED, hub.epoch_of("a"))
        assert [e.sequence for e in events_of(items)] == [6, 7, 8, 9, 10]


@pytest.mark.anyio
async def test_resume_from_another_epoch_replays_everything_retained() -> None:
    async with Broadcaster() as hub:
        await publish_n(hub, "a", 3)
        async with hub.subscribe("a", since=2, epoch="an-old-server") as sub:
            items = drain(sub)
        assert items[0] == ResyncNotice("a", 2, 1, ResyncReason.EPOCH_CHANGED, hub.epoch_of("a"))
        assert [e.sequence for e in events_of(items)] == [1, 2, 3]


@pytest.mark.anyio
async def test_resume_ahead_of_head_is_treated_as_a_restart() -> None:
    async with Broadcaster() as hub:
        await publish_n(hub, "a", 2)
        async with hub.subscribe(["a", "b"], since={"a": 100, "b": 7}) as sub:
            items = drain(sub)
        resyncs = sorted((i.namespace, i.requested_since, i.oldest_available)
                         for i in items if isinstance(i, ResyncNotice))
        assert resyncs == [("a", 100, 1), ("b", 7, 1)]
        assert [(e.namespace, e.sequence) for e in events_of(items)] == [("a", 1), ("a", 2)]


@pytest.mark.anyio
async def test_retention_by_bytes() -> None:
    async with Broadcaster() as hub:
        await hub.publish("probe", "/x", b"p")
        size = hub._namespaces["probe"].log.read(1, 2)[0].size
    async with Broadcaster(config(max_bytes=4 * size)) as hub:
        await publish_n(hub, "a", 10)
        stats = hub.statistics().namespaces["a"]
        assert (stats.oldest, stats.retained_events, stats.retained_bytes) == (7, 4, 4 * size)


@pytest.mark.anyio
async def test_a_replaying_subscriber_overtaken_by_retention_is_told() -> None:
    async with Broadcaster(config(max_events=5)) as hub:
        await publish_n(hub, "a", 5)
        async with hub.subscribe("a", since=0) as sub:
            first = sub.receive_batch_nowait(2)
            assert [e.sequence for e in events_of(first)] == [1, 2]
            await publish_n(hub, "a", 5)  # retains 6-10 now
            items = drain(sub)
        assert items[0] == DropNotice("a", 3, 3, 5, DropReason.RETENTION)
        assert [e.sequence for e in events_of(items)] == [6, 7, 8, 9, 10]


@pytest.mark.trio
async def test_retention_by_age(
    autojump_clock: trio.testing.MockClock
) -> None:
    cfg = HubConfig(
        heartbeat_interval=1.0,
        default_namespace=NamespaceConfig(retention=Retention(max_age=5.0)),
    )
    async with Broadcaster(cfg) as hub:
        await publish_n(hub, "a", 3)
        await anyio.sleep(3)
        await publish_n(hub, "a", 1)
        await anyio.sleep(3)  # the first three are now older than 5 s
        async with hub.subscribe("a", since=0) as sub:
            items = drain(sub)
        assert items[0] == ResyncNotice("a", 0, 4, ResyncReason.COMPACTED, hub.epoch_of("a"))
        assert [e.sequence for e in events_of(items)] == [4]



"""Heartbeats (progress notices) and eviction of dead subscribers, on trio's virtual clock."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from broadcaster import (
    Ended,
    EndReason,
    Event,
    Heartbeat,
    HubConfig,
    NamespaceConfig,
    Policy,
)
from broadcaster._core._lag import LoopMonitor

from ._util import Broadcaster

CONFIG = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=3)


@pytest.mark.trio
async def test_heartbeat_carries_the_latest_sequences(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe(["a", "b"]) as sub:
        await hub.publish("a", "/x")
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        sub.receive_batch_nowait()
        start = anyio.current_time()
        item = await sub.receive()
        assert item == Heartbeat(1, {"a": 2, "b": 1}, hub.epoch,
                                 {"a": hub.epoch_of("a"), "b": hub.epoch_of("b")})
        assert anyio.current_time() - start == pytest.approx(1.0)


@pytest.mark.trio
async def test_an_edge_that_sends_its_own_maps_gets_heartbeats_without_them(
    autojump_clock: trio.testing.MockClock
) -> None:
    """A gRPC stream sends one Heartbeat with the maps of all its subscriptions: it turns
    ``heartbeat_maps`` off, and its subscriptions' Heartbeats skip the per-namespace maps
    (two entries per namespace per heartbeat) but keep the id and the hub's epoch."""
    async with Broadcaster(CONFIG) as hub, hub.subscribe(["a", "b"]) as sub:
        sub.heartbeat_maps = False
        await hub.publish("a", "/x")
        sub.receive_batch_nowait()
        assert await sub.receive() == Heartbeat(1, {}, hub.epoch, {})
        assert sub.latest_sequences() == {"a": 1, "b": 0}  # what the edge asks instead


@pytest.mark.trio
async def test_a_waiting_subscriber_is_alive(autojump_clock: trio.testing.MockClock) -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a") as sub:
        for expected in range(1, 11):
            item = await sub.receive()
            assert isinstance(item, Heartbeat) and item.heartbeat_id == expected
        assert hub.subscription_count == 1


@pytest.mark.trio
async def test_a_subscriber_that_stops_consuming_is_evicted(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a") as sub:
        await anyio.sleep(3.5)
        assert hub.subscription_count == 1
        await anyio.sleep(1.0)  # the 4th heartbeat finds it silent for more than 3 intervals
        assert hub.subscription_count == 0
        assert hub.statistics().namespaces["a"].evicted == {"heartbeat_timeout": 1}
        items = sub.receive_batch_nowait()
        assert isinstance(items[-1], Ended) and items[-1].reason is EndReason.HEARTBEAT_TIMEOUT


@pytest.mark.trio
async def test_ack_liveness_needs_acks_not_reads(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        Broadcaster(CONFIG) as hub,
        hub.subscribe("a", liveness="ack") as silent,
        hub.subscribe("a", liveness="ack") as acking,
    ):

        async def reader(sub: object, ack: bool) -> None:
            while True:
                for item in await sub.receive_batch():  # type: ignore[attr-defined]
                    if isinstance(item, Heartbeat) and ack:
                        sub.ack(item.heartbeat_id)  # type: ignore[attr-defined]
                    if isinstance(item, Ended):
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, silent, False)
            tg.start_soon(reader, acking, True)
            await anyio.sleep(10)
            tg.cancel_scope.cancel()
        assert silent.end_reason is not None
        assert silent.end_reason.reason is EndReason.HEARTBEAT_TIMEOUT
        assert acking.end_reason is None
        assert hub.subscription_count == 1


@pytest.mark.trio
async def test_acks_count_only_for_heartbeats_the_subscription_was_given(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a", liveness="ack") as sub:
        await anyio.sleep(1.5)
        assert not sub.ack(0)  # id 0 answers nothing
        assert not sub.ack(2)  # never sent
        assert not sub.ack(True)  # type: ignore[arg-type]
        assert hub.statistics().heartbeat_acks_ignored == 3
        [heartbeat] = sub.receive_batch_nowait()
        assert heartbeat == Heartbeat(1, {"a": 0}, hub.epoch, {"a": hub.epoch_of("a")})
        assert sub.ack(1)
        assert sub.acked_at == anyio.current_time()
        assert not sub.ack(1)  # once: repeating it proves nothing new
        assert hub.statistics().heartbeat_acks_ignored == 4
        # a subscription made after heartbeat 1 may answer it: its stream carried it
        async with hub.subscribe("a", liveness="ack") as later:
            assert later.ack(1)
            assert not later.ack(2)
        assert hub.statistics().heartbeat_acks_ignored == 5


@pytest.mark.trio
async def test_an_ack_of_a_heartbeat_not_yet_given_counts_when_it_is_given(
    autojump_clock: trio.testing.MockClock
) -> None:
    """One stream carries one Heartbeat for all its subscriptions: the client may answer
    it before the server has read every subscription of the stream."""
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a", liveness="ack") as sub:
        await anyio.sleep(1.5)  # heartbeat 1 was sent (on the stream, for another one)
        assert not sub.ack(1)  # not given to this one yet: noted, not ignored
        assert hub.statistics().heartbeat_acks_ignored == 0
        assert sub.acked == 0
        await anyio.sleep(0.25)
        [heartbeat] = sub.receive_batch_nowait()
        assert heartbeat.heartbeat_id == 1  # type: ignore[union-attr]
        assert (sub.acked, sub.acked_at) == (1, anyio.current_time())
        assert not sub.ack(1)  # answered already


@pytest.mark.trio
async def test_blind_acks_do_not_keep_a_subscriber_alive(
    autojump_clock: trio.testing.MockClock
) -> None:
    """The old hostage: ``Ack(heartbeat_id=0)`` every 5 s kept a dead stream forever."""
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a", liveness="ack") as blind:
        async with anyio.create_task_group() as tg:

            async def ack_blindly() -> None:
                while True:
                    blind.ack(0)
                    blind.ack(hub.heartbeat_id)  # guessing the newest id does not help
                    await anyio.sleep(0.5)

            tg.start_soon(ack_blindly)
            with anyio.fail_after(100):
                while blind.end_reason is None:
                    await anyio.sleep(0.25)
            tg.cancel_scope.cancel()
        assert hub.heartbeat_id == 4  # the 4th heartbeat found it silent for 4 s
        assert blind.end_reason.reason is EndReason.HEARTBEAT_TIMEOUT
        # the zeros are ignored and counted; the guesses of the newest id wait for a
        # heartbeat given to this subscription, which only reading would give it
        assert hub.statistics().heartbeat_acks_ignored >= 8
        assert blind.acked == 0


@pytest.mark.trio
async def test_a_subscriber_that_acks_but_stops_reading_is_evicted_and_frees_publishers(
    autojump_clock: trio.testing.MockClock
) -> None:
    """``block`` with one event of room, then the subscriber stops reading but still
    answers the heartbeat it got: the publisher is held only until the subscriber has
    taken nothing for ``max_missed_heartbeats`` intervals, not for as long as it acks."""
    config = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=3,
                       default_namespace=NamespaceConfig(max_block_timeout=1e9))
    async with (
        Broadcaster(config) as hub,
        hub.subscribe("a", liveness="ack", policy=Policy.block(1, timeout=1e9)) as stuck,
        hub.subscribe("a") as bystander,
    ):
        start = anyio.current_time()
        await hub.publish("a", "/x")  # fills its room of 1
        await anyio.sleep(1.5)
        items = stuck.receive_batch_nowait()  # the last read: the event and heartbeat 1
        assert [type(i) for i in items] == [Event, Heartbeat]
        await hub.publish("a", "/x")  # fills it again; the next publish must wait
        returned: list[float] = []

        async def publish_third() -> None:
            await hub.publish("a", "/x")
            returned.append(anyio.current_time() - start)

        got: list[int] = []

        async def bystander_reads() -> None:
            async for item in bystander:
                if isinstance(item, Event):
                    got.append(item.sequence)

        async with anyio.create_task_group() as tg:
            tg.start_soon(bystander_reads)
            tg.start_soon(publish_third)
            await anyio.sleep(1.4)
            assert stuck.ack(1)  # t=2.9: it answers its heartbeat, alive by acks until 5.9
            assert not returned
            with anyio.fail_after(10):
                while len(got) < 3:
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        # it last took something at 1.5, so the heartbeat at t=5 (3.5 s later) evicts it
        assert returned == [pytest.approx(5.0)]
        assert stuck.end_reason is not None
        assert stuck.end_reason.reason is EndReason.NOT_CONSUMING
        assert "took none" in stuck.end_reason.message
        assert hub.statistics().namespaces["a"].evicted == {"not_consuming": 1}
        assert got == [1, 2, 3]  # the other subscriber missed nothing


@pytest.mark.trio
async def test_an_idle_subscriber_that_acks_is_not_evicted_for_consumption(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Nothing to take is not "not consuming": a quiet namespace's acking subscriber
    stays, even though its reader only wakes for heartbeats."""
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a", liveness="ack") as sub:
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                while True:
                    for item in await sub.receive_batch():
                        if isinstance(item, Heartbeat):
                            await anyio.sleep(0.9)  # slow to answer, but answers
                            assert sub.ack(item.heartbeat_id)

            tg.start_soon(reader)
            await anyio.sleep(20)
            tg.cancel_scope.cancel()
        assert sub.end_reason is None


@pytest.mark.trio
async def test_a_stalled_event_loop_is_not_charged_to_subscribers(
    autojump_clock: trio.testing.MockClock
) -> None:
    """A 35 s stall of the whole process (a long synchronous step) must not evict a
    subscriber that answered every heartbeat, even if its ack reaches the hub only after
    the stall; one that never answered is still evicted, on time net of the stall."""
    clock = autojump_clock
    async with (
        Broadcaster(CONFIG) as hub,
        hub.subscribe("a", liveness="ack") as healthy,
        hub.subscribe("a", liveness="ack") as dead,
    ):
        async with anyio.create_task_group() as tg:

            async def client() -> None:  # answers each heartbeat 0.6 s later (its RTT)
                while True:
                    for item in await healthy.receive_batch():
                        if isinstance(item, Heartbeat):
                            await anyio.sleep(0.6)
                            assert healthy.ack(item.heartbeat_id)

            tg.start_soon(client)
            await anyio.sleep(2.55)
            evicted_by = hub.statistics().namespaces["a"].evicted
            assert evicted_by == {}
            clock.jump(35)  # the loop runs nothing for 35 s; the ack of heartbeat 2 waits
            await anyio.sleep(0.2)
            stats = hub.statistics()
            assert stats.loop_stalled_seconds == pytest.approx(34.95)
            lag = stats.loop_lag_histogram  # one wake-up 34.95 s late, the others on time
            assert lag.sum == pytest.approx(34.95)
            assert lag.total - lag.counts[-1] == 1
            assert stats.loop_lag == 0.0  # the latest wake-up was on time again
            assert healthy.end_reason is None
            assert dead.end_reason is None  # silent 2.55 s of responsive time, not 37.55
            await anyio.sleep(1.5)
            tg.cancel_scope.cancel()
        # heartbeats at 1, 2, then 37.55 (late), 38.55, 39.55: by then the silent one has
        # been silent for 3.95 s of responsive time
        assert dead.end_reason is not None
        assert dead.end_reason.reason is EndReason.HEARTBEAT_TIMEOUT
        assert healthy.end_reason is None
        assert hub.statistics().namespaces["a"].evicted == {"heartbeat_timeout": 1}


@pytest.mark.trio
async def test_a_stall_shorter_than_the_monitors_interval_is_not_charged(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Heartbeats more frequent than the loop monitor's wake-ups (0.05 s against 0.1 s):
    each observer's lateness is a stall, so one of 0.085 s, shorter than the monitor's
    interval, is credited (the 0.045 s during which timers were due and not run), not
    lost in the gap between two observations. The subscriber that never answers is
    evicted 0.15 s of responsive time after it subscribed, not 0.15 s of the clock."""
    clock = autojump_clock
    config = HubConfig(heartbeat_interval=0.05, max_missed_heartbeats=3, loop_lag_interval=0.1)
    async with Broadcaster(config) as hub:
        start = anyio.current_time()
        await anyio.sleep(0.01)
        async with hub.subscribe("a", liveness="ack") as silent:
            await anyio.sleep(0.05)
            clock.jump(0.085)  # at 0.06: the heartbeat and the monitor due at 0.1 run at 0.145
            with anyio.fail_after(1):
                while not any(isinstance(i, Ended) for i in await silent.receive_batch()):
                    pass
            # heartbeats at 0.145, 0.195, 0.245: silent 0.19 s of responsive time at the last
            assert anyio.current_time() - start == pytest.approx(0.245)
            stats = hub.statistics()
            assert stats.loop_stalled_seconds == pytest.approx(0.045)
            assert stats.loop_lag_histogram.sum == pytest.approx(0.045)


def test_stalls_overlapping_are_counted_once_and_only_after_since() -> None:
    """The monitor's arithmetic: two observers late over overlapping spans make one
    stall; a subscriber's silence is credited only the part of a stall after its last
    sign of life."""
    monitor = LoopMonitor(interval=0.1, horizon=100.0)
    monitor.observe(1.0, 2.0)  # the monitor's timer, due at 1.0, ran at 2.0
    monitor.observe(1.5, 2.5)  # the heartbeat pass's, due at 1.5, ran at 2.5
    monitor.observe(3.0, 3.0005)  # within timer noise: no stall
    assert monitor.stalled == pytest.approx(1.5)  # [1.0, 2.5]
    monitor.observe(4.0, 4.5)
    assert monitor.stalled == pytest.approx(2.0)
    assert monitor.silence(0.0, 5.0) == pytest.approx(3.0)
    assert monitor.silence(1.75, 5.0) == pytest.approx(3.25 - 0.75 - 0.5)  # since mid-stall
    assert monitor.silence(2.5, 5.0) == pytest.approx(2.0)
    assert monitor.silence(4.5, 5.0) == pytest.approx(0.5)

"""ReadyQueue: many subscriptions served by one task, woken exactly as a waiting task
would be (both backends; heartbeats and eviction on trio's virtual clock)."""

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
    ReadyQueue,
    Retention,
    Subscription,
)

from ._util import Broadcaster, open_all

#: no heartbeats; the notifier wakes parked subscriptions at once (no linger), so that a
#: test can let it run by waiting until every task is blocked
QUIET = HubConfig(heartbeat_interval=3600.0, notify_linger=0)


def _keys(queue: ReadyQueue[str]) -> list[str]:
    return [key for key, _ in queue.take()]


async def _settle() -> None:
    """Let the hub's notifier run (and wake what it wakes)."""
    await anyio.wait_all_tasks_blocked()


@pytest.mark.anyio
async def test_a_publish_queues_only_the_subscriptions_of_its_namespace() -> None:
    async with Broadcaster(QUIET) as hub, hub.subscribe("a") as sa, hub.subscribe("b") as sb:
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("A", sa)
        queue.watch("B", sb)
        assert len(queue) == 0
        await hub.publish("a", "/x", b"1")
        with anyio.fail_after(5):
            await queue.wait()
        assert _keys(queue) == ["A"]
        [event] = sa.receive_batch_nowait()
        assert isinstance(event, Event) and event.payload == b"1"
        await hub.publish("b", "/x")
        await queue.wait()
        assert _keys(queue) == ["B"]


@pytest.mark.anyio
async def test_one_burst_queues_a_subscription_once_and_wakes_the_waiter() -> None:
    async with Broadcaster(QUIET) as hub, hub.subscribe("a") as sub:
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("s", sub)
        woke = anyio.Event()

        async def serve() -> None:
            await queue.wait()
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await anyio.lowlevel.checkpoint()
            for _ in range(5):
                await hub.publish("a", "/x")
            with anyio.fail_after(5):
                await woke.wait()
        assert _keys(queue) == ["s"]
        assert len(sub.receive_batch_nowait(100)) == 5


@pytest.mark.anyio
async def test_a_subscription_woken_by_one_namespace_leaves_the_others() -> None:
    async with Broadcaster(QUIET) as hub, hub.subscribe(["a", "b"]) as sub:
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("s", sub)
        await hub.publish("a", "/x")
        await queue.wait()
        assert _keys(queue) == ["s"]  # take() unparks it from "b" as well
        assert not sub.waiting
        await hub.publish("b", "/x")
        await _settle()
        assert len(queue) == 0  # not watched: the serving task reads it when it wants
        assert len(sub.receive_batch_nowait()) == 2


@pytest.mark.anyio
async def test_a_subscription_woken_from_elsewhere_is_queued_again_only_when_watched() -> None:
    """A one-namespace subscription woken other than by its namespace (a heartbeat, a
    notice) stays on the namespace's waiting set, and unparking it does nothing: the
    namespace's next events queue nothing until it is watched again, then once."""
    async with Broadcaster(QUIET) as hub, hub.subscribe("a") as sub:
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("s", sub)
        sub.wake()  # what a heartbeat or a notice does: not through namespace "a"
        assert _keys(queue) == ["s"]
        with pytest.raises(anyio.WouldBlock):
            sub.receive_batch_nowait()
        await hub.publish("a", "/x", b"1")
        await _settle()
        assert len(queue) == 0  # not watched
        queue.watch("s", sub)
        await hub.publish("a", "/x", b"2")
        with anyio.fail_after(5):
            await queue.wait()
        await _settle()
        assert _keys(queue) == ["s"]
        assert [e.payload for e in sub.receive_batch_nowait()] == [b"1", b"2"]  # type: ignore[union-attr]
        await hub.publish("a", "/x", b"3")
        await _settle()
        assert len(queue) == 0


@pytest.mark.trio
async def test_close_eviction_and_heartbeats_queue_the_subscription(
    autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=2)
    async with Broadcaster(config) as hub:
        closed, evicted, beating = (hub.subscribe("a", liveness=liveness)
                                    for liveness in ("consume", "ack", "ack"))
        await open_all(hub, closed, evicted, beating)
        queue: ReadyQueue[str] = ReadyQueue()
        for key, sub in (("closed", closed), ("evicted", evicted), ("beating", beating)):
            queue.watch(key, sub)
        closed.close()
        assert _keys(queue) == ["closed"]
        with pytest.raises(anyio.ClosedResourceError):
            closed.receive_batch_nowait()
        # a heartbeat: "beating" acks it and is queued; "evicted" never acks
        seen: list[object] = []
        with anyio.fail_after(60):
            while not any(isinstance(i, Ended) for i in seen):
                await queue.wait()
                for key, sub in queue.take():
                    items = sub.receive_batch_nowait()
                    if key == "beating":
                        assert all(isinstance(i, Heartbeat) for i in items)
                        assert sub.ack(items[-1].heartbeat_id)  # type: ignore[union-attr]
                    else:
                        seen.extend(items)
                    if not isinstance(items[-1], Ended):
                        queue.watch(key, sub)
        assert seen[-1] == Ended(EndReason.HEARTBEAT_TIMEOUT, seen[-1].message)  # type: ignore[union-attr]
        assert beating.end_reason is None
        beating.close()


@pytest.mark.anyio
async def test_watching_a_subscription_twice_is_an_error() -> None:
    async with Broadcaster(QUIET) as hub, hub.subscribe("a") as sub:
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("s", sub)
        with pytest.raises(anyio.BusyResourceError):
            queue.watch("again", sub)
        with pytest.raises(anyio.BusyResourceError):
            await sub.receive()


@pytest.mark.anyio
async def test_watching_a_closed_subscription_queues_it_at_once() -> None:
    async with Broadcaster(QUIET) as hub:
        sub = hub.subscribe("a")
        await open_all(hub, sub)
        sub.close()
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("s", sub)
        assert _keys(queue) == ["s"]


@pytest.mark.anyio
async def test_drops_while_parked_are_reported_when_read() -> None:
    ns = NamespaceConfig(retention=Retention(max_events=1000))
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0, default_namespace=ns)) as hub:
        async with hub.subscribe("a", policy=Policy.drop_newest(2)) as sub:
            queue: ReadyQueue[str] = ReadyQueue()
            queue.watch("s", sub)
            for _ in range(5):
                await hub.publish("a", "/x")
            await queue.wait()
            [(_, woken)] = queue.take()
            items = woken.receive_batch_nowait()
    assert [i.sequence for i in items if isinstance(i, Event)] == [1, 2]
    assert [(n.first_sequence, n.last_sequence, n.count)  # type: ignore[union-attr]
            for n in items if not isinstance(n, Event)] == [(3, 5, 3)]


@pytest.mark.anyio
async def test_a_topic_filter_is_woken_only_by_its_topics() -> None:
    async with Broadcaster(QUIET) as hub:
        exits = hub.subscribe("k8s.io", filters=['topic=="/tasks/exit"', 'topic=="/tasks/oom"'])
        labelled = hub.subscribe("k8s.io", filters=["labels.app==web"])
        await open_all(hub, exits, labelled)
        queue: ReadyQueue[str] = ReadyQueue()
        queue.watch("exits", exits)
        queue.watch("labelled", labelled)
        for _ in range(50):
            await hub.publish("k8s.io", "/tasks/start")
        await _settle()
        assert _keys(queue) == ["labelled"]  # any topic may carry the label
        queue.watch("labelled", labelled)
        assert exits.waiting
        await hub.publish("k8s.io", "/tasks/oom")
        await queue.wait()
        assert sorted(_keys(queue)) == ["exits", "labelled"]
        [event] = exits.receive_batch_nowait()
        assert isinstance(event, Event) and (event.topic, event.sequence) == ("/tasks/oom", 51)


@pytest.mark.anyio
async def test_events_trimmed_while_parked_are_not_reported_lost_unless_they_matched() -> None:
    ns = NamespaceConfig(retention=Retention(max_events=10))
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0, default_namespace=ns)) as hub:
        async with hub.subscribe("a", filters=['topic=="/exit"']) as exits, \
                hub.subscribe("a", filters=['topic~="^/exit$"']) as scanned:
            queue: ReadyQueue[str] = ReadyQueue()
            queue.watch("exits", exits)
            queue.watch("scanned", scanned)  # no topic index: woken by every burst
            for _ in range(100):  # 91 of the 101 trimmed before anyone reads
                await hub.publish("a", "/start")
            await hub.publish("a", "/exit")
            ready: dict[str, Subscription] = {}
            while len(ready) < 2:  # a durable log's publishes let the notifier run between
                await queue.wait()
                ready.update(queue.take())
            got = {key: sub.receive_batch_nowait() for key, sub in ready.items()}
    kinds = {key: [(type(i).__name__, getattr(i, "sequence", None)) for i in items]
             for key, items in got.items()}
    assert kinds["exits"] == [("Event", 101)]
    # a filter the hub cannot index: the trimmed events might have matched, so say so
    assert kinds["scanned"] == [("DropNotice", None), ("Event", 101)]
    [notice, _] = got["scanned"]
    assert (notice.first_sequence, notice.last_sequence) == (1, 91)  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_identical_filters_share_one_matcher() -> None:
    async with Broadcaster(QUIET) as hub:
        a = hub.subscribe("a", filters=['topic=="/x"'])
        b = hub.subscribe("b", filters=['topic=="/x"'])
        c = hub.subscribe("a", filters=['topic=="/y"'])
    assert a.matcher is b.matcher and a.matcher is not c.matcher
    assert a.topics == frozenset({"/x"})

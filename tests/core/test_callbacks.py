"""In-process callbacks: re-entrant registration (the exit-handler deadlock of
BACKGROUND.md), errors, stuck-callback reporting."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

import anyio
import pytest
import trio
import trio.testing

from broadcaster import CallbackHandle, Event, HubConfig, Item

from ._util import Broadcaster, until

#: the notifier wakes callbacks at once: steps are ordered by waiting until every task
#: is blocked, never by sleeping
NOW = HubConfig(notify_linger=0)


@pytest.mark.anyio
async def test_a_callback_may_register_and_remove_callbacks() -> None:
    """Regression test for the exit-handler deadlock: a callback that registers another
    callback (and removes itself) while being called."""
    calls: list[tuple[str, str]] = []
    async with Broadcaster(NOW) as hub:
        handles: dict[str, CallbackHandle] = {}

        def second(item: Item) -> None:
            assert isinstance(item, Event)
            calls.append(("second", item.payload.decode()))

        def first(item: Item) -> None:
            assert isinstance(item, Event)
            calls.append(("first", item.payload.decode()))
            handles["second"] = hub.on_event(second, "k8s.io", filters=['topic=="/tasks/exit"'])
            handles["first"].remove()

        handles["first"] = hub.on_event(first, "k8s.io", filters=['topic=="/tasks/exit"'])
        await hub.publish("k8s.io", "/tasks/exit", b"c1")
        await until(lambda: "second" in handles)
        await hub.publish("k8s.io", "/tasks/exit", b"c2")
        await until(lambda: len(calls) == 2)
        assert calls == [("first", "c1"), ("second", "c2")]
        assert not handles["first"].active
        await until(lambda: hub.statistics().callbacks == 1)


@pytest.mark.anyio
async def test_a_failing_callback_is_counted_and_keeps_running() -> None:
    seen: list[int] = []

    async def flaky(item: Item) -> None:
        assert isinstance(item, Event)
        seen.append(item.sequence)
        if item.sequence == 1:
            raise RuntimeError("boom")

    async with Broadcaster(NOW) as hub:
        hub.on_event(flaky, "a")
        for _ in range(3):
            await hub.publish("a", "/x")
        await until(lambda: len(seen) == 3)
        assert seen == [1, 2, 3]
        assert hub.statistics().callback_errors == 1


@pytest.mark.anyio
async def test_sync_callback_in_a_thread() -> None:
    threads: list[str] = []
    called = threading.Event()

    def in_thread(item: Item) -> None:
        threads.append(threading.current_thread().name)
        called.set()

    async with Broadcaster(NOW) as hub:
        hub.on_event(in_thread, "a", thread=True)
        await hub.publish("a", "/x")
        assert await anyio.to_thread.run_sync(called.wait, 10.0)
    assert threads[0] != threading.main_thread().name


@pytest.mark.anyio
async def test_removed_callbacks_leave_nothing_behind() -> None:
    async with Broadcaster(NOW) as hub:
        handles = [hub.on_event(lambda item: None, "a") for _ in range(100)]
        # registered at once on the memory log; by the callbacks' tasks once a durable
        # log is open
        await until(lambda: hub.subscription_count == 100)
        for handle in handles:
            handle.remove()
        await until(lambda: hub.statistics().callbacks == 0)
        assert hub.subscription_count == 0


@pytest.mark.trio
async def test_a_stuck_callback_is_reported_while_others_go_on(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    fast: list[int] = []
    release = anyio.Event()

    async def stuck(item: Item) -> None:
        await release.wait()

    async with Broadcaster(HubConfig(callback_timeout=5.0)) as hub:
        hub.on_event(stuck, "a", name="stuck-exit-handler")
        hub.on_event(lambda item: fast.append(1), "a")
        with caplog.at_level(logging.WARNING, logger="broadcaster.callbacks"):
            for _ in range(3):
                await hub.publish("a", "/x")
            await trio.sleep(4.0)
            assert len(fast) == 3
            assert hub.statistics().slow_callbacks == 0
            # the watchdog looks every callback_timeout / 4: reported by 5 + 1.25 s after
            # the call began (on a durable log it begins after the notifier's linger)
            await trio.sleep(2.5)
            assert hub.statistics().slow_callbacks == 1
        assert "stuck-exit-handler has been running for" in caplog.text
        release.set()
        await trio.sleep(1.0)
        assert hub.statistics().slow_callbacks == 1  # reported once per stuck call


@pytest.mark.trio
async def test_steps_of_a_reentrant_callback_in_order() -> None:
    """The exit-handler deadlock, step by step (trio.testing.Sequencer): while the first
    callback runs (step 1) it registers a second one and removes itself; the publisher
    publishes again only after that (step 2); the removed callback's call finishes, the
    new one gets only the second event."""
    seq = trio.testing.Sequencer()
    calls: list[tuple[str, bytes]] = []
    handles: dict[str, CallbackHandle] = {}
    async with Broadcaster(NOW) as hub:

        def second(item: Item) -> None:
            assert isinstance(item, Event)
            calls.append(("second", item.payload))

        async def first(item: Item) -> None:
            assert isinstance(item, Event)
            async with seq(1):
                calls.append(("first", item.payload))
                handles["second"] = hub.on_event(second, "k8s.io")
                handles["first"].remove()
                assert hub.statistics().callbacks == 2  # its own task is still running

        handles["first"] = hub.on_event(first, "k8s.io")
        async with seq(0):
            await hub.publish("k8s.io", "/tasks/exit", b"c1")
        async with seq(2):
            await hub.publish("k8s.io", "/tasks/exit", b"c2")
        await until(lambda: len(calls) == 2)
        await until(lambda: hub.statistics().callbacks == 1)
    assert calls == [("first", b"c1"), ("second", b"c2")]


@pytest.mark.trio
async def test_removing_a_callback_cancels_its_running_call_at_its_next_await() -> None:
    seq = trio.testing.Sequencer()
    reached: list[str] = []
    async with Broadcaster(NOW) as hub:

        async def slow(item: Item) -> None:
            async with seq(1):
                reached.append("started")
            await trio.sleep_forever()  # cancelled here by remove()
            reached.append("finished")

        handle = hub.on_event(slow, "a")
        async with seq(0):
            await hub.publish("a", "/x")
        async with seq(2):
            handle.remove()
            assert not handle.active
        await until(lambda: hub.statistics().callbacks == 0)
        await hub.publish("a", "/x")
        await anyio.wait_all_tasks_blocked()
        assert hub.statistics().callback_errors == 0  # cancelled, not failed
    assert reached == ["started"]


@pytest.mark.trio
async def test_callbacks_waiting_for_the_log_to_open_miss_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Callbacks registered before the first publish of a namespace whose durable log is
    not open yet: the publisher opens the log and the callbacks' tasks wait for it; one
    that resumed after the publisher's first event was stored used to start after it
    (``opened_at`` took the log's head at its resumption, not at the opening), and lost
    it. Trio runs ready tasks in a random order: many hubs, each a fresh interleaving."""
    for _ in range(20):
        got: list[list[int]] = [[], [], []]
        async with Broadcaster(NOW) as hub:
            for seen in got:
                hub.on_event(_recorder(seen), "a")
            for _ in range(3):
                await hub.publish("a", "/x")
            await until(functools.partial(_each_has, got, 3))
            assert got == [[1, 2, 3]] * 3


def _recorder(seen: list[int]) -> Callable[[Item], None]:
    def record(item: Item) -> None:
        if isinstance(item, Event):
            seen.append(item.sequence)
    return record


def _each_has(lists: list[list[int]], count: int) -> bool:
    return all(len(seen) == count for seen in lists)

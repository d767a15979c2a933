"""In-process callbacks: re-entrant registration (the exit-handler deadlock of
BACKGROUND.md), errors, stuck-callback reporting."""

from __future__ import annotations

import logging
import threading

import anyio
import pytest

from broadcaster import CallbackHandle, Event, HubConfig, Item

from ._util import Broadcaster

pytestmark = pytest.mark.anyio


async def wait_for(condition: object, seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.001)


async def test_a_callback_may_register_and_remove_callbacks() -> None:
    """Regression test for the exit-handler deadlock: a callback that registers another
    callback (and removes itself) while being called."""
    calls: list[tuple[str, str]] = []
    async with Broadcaster() as hub:
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
        await wait_for(lambda: "second" in handles)
        await hub.publish("k8s.io", "/tasks/exit", b"c2")
        await wait_for(lambda: len(calls) == 2)
        assert calls == [("first", "c1"), ("second", "c2")]
        assert not handles["first"].active
        await wait_for(lambda: hub.statistics().callbacks == 1)


async def test_a_failing_callback_is_counted_and_keeps_running() -> None:
    seen: list[int] = []

    async def flaky(item: Item) -> None:
        assert isinstance(item, Event)
        seen.append(item.sequence)
        if item.sequence == 1:
            raise RuntimeError("boom")

    async with Broadcaster() as hub:
        hub.on_event(flaky, "a")
        for _ in range(3):
            await hub.publish("a", "/x")
        await wait_for(lambda: len(seen) == 3)
        assert seen == [1, 2, 3]
        assert hub.statistics().callback_errors == 1


async def test_sync_callback_in_a_thread() -> None:
    threads: list[str] = []
    async with Broadcaster() as hub:
        hub.on_event(lambda item: threads.append(threading.current_thread().name), "a",
                     thread=True)
        await hub.publish("a", "/x")
        await wait_for(lambda: len(threads) == 1)
    assert threads[0] != threading.main_thread().name


async def test_removed_callbacks_leave_nothing_behind() -> None:
    async with Broadcaster() as hub:
        handles = [hub.on_event(lambda item: None, "a") for _ in range(100)]
        # registered at once on the memory log; by the callbacks' tasks once a durable
        # log is open
        await wait_for(lambda: hub.subscription_count == 100)
        for handle in handles:
            handle.remove()
        await wait_for(lambda: hub.statistics().callbacks == 0)
        assert hub.subscription_count == 0


@pytest.mark.virtual_clock
class TestStuck:
    async def test_a_stuck_callback_is_reported_while_others_go_on(
        self, caplog: pytest.LogCaptureFixture
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
                await anyio.sleep(4.0)
                assert len(fast) == 3
                assert hub.statistics().slow_callbacks == 0
                # the watchdog looks every callback_timeout / 4: reported by 5 + 1.25 s after
                # the call began (on a durable log it begins after the notifier's linger)
                await anyio.sleep(2.5)
                assert hub.statistics().slow_callbacks == 1
            assert "stuck-exit-handler has been running for" in caplog.text
            release.set()
            await anyio.sleep(1.0)
            assert hub.statistics().slow_callbacks == 1  # reported once per stuck call

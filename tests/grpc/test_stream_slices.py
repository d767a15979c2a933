"""A Subscribe stream of many subscriptions over many namespaces does not hold the event
loop (issue 9, ``all_ns_subscriptions``): a read pass stops once it has read for
``_READ_SLICE`` seconds and lets other tasks run before the rest, and the subscriptions
left when the stream ends are closed in slices too. On trio's virtual clock, with the
stream's own clock replaced by one that advances at every reading, so that "a slice ran
out" happens at a known point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import trio.testing

from broadcaster import Broadcaster, HubConfig
from broadcaster.grpc import _subscribe_stream
from broadcaster.grpc._subscribe_stream import StreamLimits, SubscribeStream
from broadcaster.v1 import broadcaster_pb2 as pb

pytestmark = pytest.mark.anyio

SUBS = 20
NAMESPACES = 30


@pytest.fixture
def anyio_backend() -> object:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stream's clock advances by half a slice at every reading: a pass reads about
    two subscriptions."""
    now = [0.0]

    def clock() -> float:
        now[0] += _subscribe_stream._READ_SLICE / 2
        return now[0]

    monkeypatch.setattr(_subscribe_stream, "_clock", lambda: clock)
    yield


async def _adds(added: anyio.Event) -> AsyncIterator[pb.SubscribeRequest]:
    for i in range(SUBS):
        yield pb.SubscribeRequest(add=pb.SubscribeRequest.Add(subscription_id=f"s{i}"))
    added.set()
    await anyio.sleep_forever()


async def _open(hub: Broadcaster, tg: anyio.abc.TaskGroup) -> SubscribeStream:
    for i in range(NAMESPACES):
        await hub.publish(f"n{i}", "/e")

    async def write(message: bytes) -> None:
        pass

    stream = SubscribeStream(hub, StreamLimits(batch_linger=0), write)
    added = anyio.Event()
    tg.start_soon(stream.run, _adds(added))
    await added.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert stream.subscription_count == SUBS
    return stream


async def test_a_wake_up_of_many_wide_subscriptions_is_read_in_slices(
        ticking_clock: None) -> None:
    config = HubConfig(heartbeat_interval=3600.0, notify_linger=0)
    async with Broadcaster(config) as hub, anyio.create_task_group() as tg:
        stream = await _open(hub, tg)
        subs = [entry.sub for entry in stream._subs.values()]
        assert all(sub.waiting for sub in subs)
        await hub.publish("n7", "/e")  # wakes every one of them (all-namespaces)
        parked: list[int] = []  # subscriptions parked again, at each step of this task
        with anyio.fail_after(60):
            while not parked or parked[-1] < SUBS:
                await anyio.lowlevel.checkpoint()
                now_parked = sum(sub.waiting for sub in subs)
                if parked or now_parked < SUBS:  # from the wake-up on
                    parked.append(now_parked)
        # this task ran between the slices: the stream read about two at a time
        assert len(set(parked)) > SUBS // 4, parked
        assert sorted(parked) == parked
        assert all(sub.delivered == 1 for sub in subs)
        tg.cancel_scope.cancel()


async def test_the_subscriptions_left_at_the_end_are_closed_in_slices(
        ticking_clock: None) -> None:
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        scopes: list[anyio.CancelScope] = []
        ready = anyio.Event()

        async def serve() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                async with anyio.create_task_group() as tg:
                    await _open(hub, tg)
                    ready.set()
                    await anyio.sleep_forever()

        left: list[int] = []
        async with anyio.create_task_group() as outer:
            outer.start_soon(serve)
            await ready.wait()
            scopes[0].cancel()  # the client went away: every subscription is closed
            with anyio.fail_after(60):
                while hub.subscription_count:
                    left.append(hub.subscription_count)
                    await anyio.lowlevel.checkpoint()
        # this task ran between the slices: about two closed at a time
        assert len(set(left)) > SUBS // 4, left
        assert hub.subscription_count == 0 and hub.statistics().cursors == 0

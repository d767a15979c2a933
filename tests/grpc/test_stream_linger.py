"""When a Subscribe stream writes, on trio's virtual clock: an idle stream writes an event
as soon as it is published; events that arrive while a write is in flight, or within
``batch_linger`` of the last write, go out together in the next message, unless a
subscription's policy bound is too small to hold them meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import trio.testing

from broadcaster import Broadcaster, HubConfig
from broadcaster.grpc._subscribe_stream import StreamLimits, SubscribeStream
from broadcaster.v1 import broadcaster_pb2 as pb

pytestmark = pytest.mark.anyio

LINGER = 1.0  # virtual seconds


@pytest.fixture
def anyio_backend() -> object:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def _requests(policy: pb.OverflowPolicy | None) -> AsyncIterator[pb.SubscribeRequest]:
    add = pb.SubscribeRequest.Add(subscription_id="s", namespaces=["ns"])
    if policy is not None:
        add.policy.CopyFrom(policy)
    yield pb.SubscribeRequest(add=add)
    await anyio.sleep_forever()


async def _batches(policy: pb.OverflowPolicy | None, linger: float = LINGER
                   ) -> list[tuple[float, list[int]]]:
    """(virtual time after the first publish, sequences) of each EventBatch a stream
    sends for 3 events published 0.1 s apart, once the stream has been idle (no write)
    for longer than *linger*."""
    sent: list[tuple[float, pb.SubscribeResponse]] = []

    async def write(message: bytes) -> None:
        sent.append((anyio.current_time(), pb.SubscribeResponse.FromString(message)))

    async with Broadcaster(HubConfig(heartbeat_interval=3600.0, notify_linger=0)) as hub:
        stream = SubscribeStream(hub, StreamLimits(batch_linger=linger), write)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.run, _requests(policy))
            await anyio.sleep(2 * LINGER)  # the AddResult went out long ago
            start = anyio.current_time()
            for _ in range(3):
                await hub.publish("ns", "/e")
                await anyio.sleep(0.1)
            await anyio.sleep(2 * LINGER)
            tg.cancel_scope.cancel()
    assert sent[0][1].WhichOneof("kind") == "add_result" and sent[0][1].add_result.ok
    assert all(m.WhichOneof("kind") == "event_batch" for _, m in sent[1:]), sent  # no drops
    return [(round(t - start, 6), [d.event.sequence for d in m.event_batch.deliveries])
            for t, m in sent[1:]]


async def test_an_idle_stream_writes_at_once_and_holds_what_follows_for_the_linger() -> None:
    # the namespace default bound (1024 events) holds the rest of the burst meanwhile
    assert await _batches(None) == [(0.0, [1]), (LINGER, [2, 3])]


async def test_without_a_linger_every_event_is_written_as_it_comes() -> None:
    assert await _batches(None, linger=0) == [(0.0, [1]), (0.1, [2]), (0.2, [3])]


async def test_a_tight_policy_bound_is_read_at_once_and_loses_nothing() -> None:
    tight = pb.OverflowPolicy(kind=pb.OverflowPolicy.DROP_NEWEST, max_events=2)
    # lingering would have held 3 events in a bound of 2: one dropped, with a notice
    assert await _batches(tight) == [(0.0, [1]), (0.1, [2]), (0.2, [3])]


async def test_events_published_while_a_write_is_in_flight_go_out_together() -> None:
    sent: list[list[int]] = []
    release = anyio.Event()
    writing = anyio.Event()

    async def write(message: bytes) -> None:
        response = pb.SubscribeResponse.FromString(message)
        if response.WhichOneof("kind") != "event_batch":
            return
        sent.append([d.event.sequence for d in response.event_batch.deliveries])
        writing.set()
        if len(sent) == 1:
            await release.wait()  # a client that reads slowly: the first write blocks

    async with Broadcaster(HubConfig(heartbeat_interval=3600.0, notify_linger=0)) as hub:
        stream = SubscribeStream(hub, StreamLimits(batch_linger=0), write)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.run, _requests(None))
            await anyio.wait_all_tasks_blocked()
            await hub.publish("ns", "/e")
            with anyio.fail_after(5):
                await writing.wait()
            for _ in range(3):
                await hub.publish("ns", "/e")
            await anyio.wait_all_tasks_blocked()
            assert sent == [[1]]  # nothing more while the first write is in flight
            release.set()
            with anyio.fail_after(5):
                while len(sent) < 2:
                    await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert sent == [[1], [2, 3, 4]]

"""The Subscribe stream's pump linger, on trio's virtual clock: a burst goes out as one
batch, unless a subscription's policy bound is too small to hold it meanwhile."""

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


async def _batches(policy: pb.OverflowPolicy | None) -> list[list[int]]:
    """Sequences of each EventBatch a stream sends for 3 events published 0.1 s apart."""
    sent: list[pb.SubscribeResponse] = []

    async def write(message: bytes) -> None:
        sent.append(pb.SubscribeResponse.FromString(message))

    async def requests() -> AsyncIterator[pb.SubscribeRequest]:
        add = pb.SubscribeRequest.Add(subscription_id="s", namespaces=["ns"])
        if policy is not None:
            add.policy.CopyFrom(policy)
        yield pb.SubscribeRequest(add=add)
        await anyio.sleep_forever()

    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        stream = SubscribeStream(hub, StreamLimits(batch_linger=LINGER), write)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.run, requests())
            await anyio.sleep(0.01)
            for _ in range(3):
                await hub.publish("ns", "/e")
                await anyio.sleep(0.1)
            await anyio.sleep(2 * LINGER)
            tg.cancel_scope.cancel()
    assert sent[0].WhichOneof("kind") == "add_result" and sent[0].add_result.ok
    assert all(m.WhichOneof("kind") == "event_batch" for m in sent[1:]), sent  # no drops
    return [[d.event.sequence for d in m.event_batch.deliveries] for m in sent[1:]]


async def test_a_burst_within_the_linger_is_one_batch() -> None:
    assert await _batches(None) == [[1, 2, 3]]  # the namespace default: 1024 events


async def test_a_tight_policy_bound_is_read_at_once_and_loses_nothing() -> None:
    tight = pb.OverflowPolicy(kind=pb.OverflowPolicy.DROP_NEWEST, max_events=2)
    # lingering would have held 3 events in a bound of 2: one dropped, with a notice
    assert await _batches(tight) == [[1], [2], [3]]

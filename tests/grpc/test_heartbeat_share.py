"""The heartbeat budget of Subscribe streams (issue 9, ``fanout_streams``): with more
streams than ``per_second * heartbeat_interval``, each stream sends only every k-th
heartbeat, on its own turn; a heartbeat not sent is never owed by the client, and a
client that answers none is still evicted. On trio's virtual clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import anyio
import pytest
import trio.testing

from broadcaster import Broadcaster, HubConfig
from broadcaster.grpc._heartbeat_share import HeartbeatShare
from broadcaster.grpc._subscribe_stream import StreamLimits, SubscribeStream
from broadcaster.v1 import broadcaster_pb2 as pb

pytestmark = pytest.mark.anyio

STREAMS = 6


@pytest.fixture
def anyio_backend() -> object:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def test_the_stride_grows_with_the_streams_up_to_the_longest_gap() -> None:
    share = HeartbeatShare(per_second=10, interval=1.0, max_gap=5.0)
    slots = [share.join() for _ in range(10)]
    assert share.stride == 1 and all(share.due(s, 7) for s in slots)
    slots += [share.join() for _ in range(15)]
    assert share.streams == 25 and share.stride == 3
    for heartbeat_id in range(1, 10):  # each stream on its own turn, spread evenly
        due = [s for s in slots if share.due(s, heartbeat_id)]
        assert 8 <= len(due) <= 9
    for slot in slots:  # every stream once in any three heartbeats in a row
        assert sum(share.due(slot, h) for h in range(4, 7)) == 1
    for _ in range(100):
        share.join()
    assert share.stride == 5  # capped: at most max_gap / interval
    for _ in range(125):
        share.leave()
    assert share.stride == 1
    with pytest.raises(ValueError, match="per_second"):
        HeartbeatShare(0, 1.0)
    with pytest.raises(ValueError, match="interval"):
        HeartbeatShare(1, 0.0)


class _Client:
    """One stream's client: reads heartbeats from the stream's writes, acks them (or
    not) through its requests."""

    def __init__(self, index: int, acks: bool) -> None:
        self.index = index
        self.acks = acks
        self.heartbeats: list[int] = []
        self.ended: list[str] = []
        self._send, self._receive = anyio.create_memory_object_stream[int](100)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def requests(self) -> AsyncIterator[pb.SubscribeRequest]:
        yield pb.SubscribeRequest(add=pb.SubscribeRequest.Add(subscription_id="s"))
        async for heartbeat_id in self._receive:
            yield pb.SubscribeRequest(ack=pb.SubscribeRequest.Ack(heartbeat_id=heartbeat_id))

    async def write(self, data: bytes) -> None:
        message = pb.SubscribeResponse.FromString(data)
        kind = message.WhichOneof("kind")
        if kind == "heartbeat":
            self.heartbeats.append(message.heartbeat.heartbeat_id)
            if self.acks:
                self._send.send_nowait(message.heartbeat.heartbeat_id)
        elif kind == "subscription_ended":
            self.ended.append(message.subscription_ended.reason)


async def test_a_stream_owes_only_the_heartbeats_it_was_sent() -> None:
    """Six streams share a budget of two heartbeats per interval: each gets every third
    heartbeat. With one missed heartbeat allowed, the five that answer what they get
    are never evicted (they skip two heartbeats in a row every time), and the one that
    answers nothing is."""
    config = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=1)
    share = HeartbeatShare(per_second=2, interval=1.0)
    clients = [_Client(i, acks=i != STREAMS - 1) for i in range(STREAMS)]
    async with Broadcaster(config) as hub, anyio.create_task_group() as tg:
        for client in clients:
            stream = SubscribeStream(hub, StreamLimits(batch_linger=0), client.write,
                                     heartbeats=share)
            tg.start_soon(stream.run, client.requests())
        await anyio.sleep(20)
        assert share.stride == 3
        tg.cancel_scope.cancel()
    for client in clients:
        client.close()
    *honest, silent = clients
    for client in honest:
        assert client.ended == [], client.index
        assert len(client.heartbeats) >= 5, client.heartbeats
        assert len({h % 3 for h in client.heartbeats}) == 1, client.heartbeats  # its turn
        assert all(b - a == 3 for a, b in itertools.pairwise(client.heartbeats))
    assert silent.ended == ["heartbeat_timeout"]
    turns = [c.heartbeats[0] % 3 for c in clients]
    assert sorted(turns.count(r) for r in range(3)) == [2, 2, 2]  # spread evenly

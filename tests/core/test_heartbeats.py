"""Heartbeats (progress notices) and eviction of dead subscribers, on trio's virtual clock."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from broadcaster import Broadcaster, Ended, EndReason, Heartbeat, HubConfig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> object:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


CONFIG = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=3)


async def test_heartbeat_carries_the_latest_sequences() -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe(["a", "b"]) as sub:
        await hub.publish("a", "/x")
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        sub.receive_batch_nowait()
        start = anyio.current_time()
        item = await sub.receive()
        assert item == Heartbeat(1, {"a": 2, "b": 1}, hub.epoch)
        assert anyio.current_time() - start == pytest.approx(1.0)


async def test_a_waiting_subscriber_is_alive() -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a") as sub:
        for expected in range(1, 11):
            item = await sub.receive()
            assert isinstance(item, Heartbeat) and item.heartbeat_id == expected
        assert hub.subscription_count == 1


async def test_a_subscriber_that_stops_consuming_is_evicted() -> None:
    async with Broadcaster(CONFIG) as hub, hub.subscribe("a") as sub:
        await anyio.sleep(3.5)
        assert hub.subscription_count == 1
        await anyio.sleep(1.0)  # the 4th heartbeat finds it silent for more than 3 intervals
        assert hub.subscription_count == 0
        assert hub.statistics().namespaces["a"].evicted == {"heartbeat_timeout": 1}
        items = sub.receive_batch_nowait()
        assert isinstance(items[-1], Ended) and items[-1].reason is EndReason.HEARTBEAT_TIMEOUT


async def test_ack_liveness_needs_acks_not_reads() -> None:
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

"""No filter holds the event loop for long: a read matches for at most
``filters.match_slice`` seconds of CPU per namespace, then the subscription is woken for
the rest after the other tasks ran. Nothing is lost or reordered by slicing.

The CPU clock is replaced by one that advances 1 ms per reading, so slices are exact:
with a 2 ms budget a read matches 16 + 32 = 48 events."""

from __future__ import annotations

import json

import anyio
import pytest

from broadcaster import Event, FilterConfig, HubConfig
from broadcaster._core._payload import json_fields

from ._util import Broadcaster, events_of

pytestmark = pytest.mark.anyio

SLICE = 48  # events one read matches with the ticking clock below


class Ticking:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class Counting:
    def __init__(self) -> None:
        self.decoded = 0

    def __call__(self, type_url: str, payload: bytes) -> object:
        self.decoded += 1
        return json_fields(type_url, payload)


def _config(resolver: Counting) -> HubConfig:
    return HubConfig(cpu_clock=Ticking(), notify_linger=0, payload_fields=resolver,  # type: ignore[arg-type]
                     filters=FilterConfig(match_slice=0.002))


async def _publish(hub: Broadcaster, count: int) -> None:
    for i in range(count):
        await hub.publish("a", "/t", json.dumps({"id": str(i)}).encode(),
                          type_url="application/json")


async def test_a_read_matches_one_slice_and_the_rest_comes_after_others_ran() -> None:
    resolver = Counting()
    async with Broadcaster(_config(resolver)) as hub:
        heavy = hub.subscribe("a", filters=["event.id==1999"])
        other = hub.subscribe("b")
        async with heavy, other:
            await _publish(hub, 2000)
            with pytest.raises(anyio.WouldBlock):
                heavy.receive_batch_nowait()
            assert resolver.decoded == SLICE and heavy.cursors["a"].behind
            # another namespace's subscriber has an event to read (published before the
            # readers start: a durable publish awaits the store, outside the loop, and the
            # heavy reader may rightly go on while nobody else is ready)
            await hub.publish("b", "/y")
            order: list[str] = []

            async def read_heavy() -> None:
                item = await heavy.receive()
                assert isinstance(item, Event) and item.sequence == 2000
                order.append("heavy")

            async def read_other() -> None:
                item = await other.receive()
                assert isinstance(item, Event)
                order.append("other")

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_heavy)  # first: it reads a slice, then waits
                    tg.start_soon(read_other)
            assert order == ["other", "heavy"]
            assert resolver.decoded == 2000  # each payload once, slices notwithstanding
            assert not heavy.cursors["a"].behind


async def test_slicing_loses_and_reorders_nothing() -> None:
    resolver = Counting()
    async with Broadcaster(_config(resolver)) as hub:
        sub = hub.subscribe("a", filters=['event.id~="0$"'])
        async with sub:
            await _publish(hub, 1000)
            got: list[int] = []
            with anyio.fail_after(10):
                while len(got) < 100:
                    got += [e.sequence for e in events_of(await sub.receive_batch(1000))]
            assert got == list(range(1, 1001, 10))


async def test_a_filtered_replay_is_sliced_too() -> None:
    resolver = Counting()
    async with Broadcaster(_config(resolver)) as hub:
        await _publish(hub, 1000)
        sub = hub.subscribe("a", filters=["event.id==999"], since=0)
        async with sub:
            with pytest.raises(anyio.WouldBlock):
                sub.receive_batch_nowait()
            assert resolver.decoded == SLICE and sub.cursors["a"].behind
            with anyio.fail_after(10):
                item = await sub.receive()
            assert isinstance(item, Event) and item.sequence == 1000

"""The encoders' cache of bytes per event (``broadcaster/grpc/_event_cache.py``): kept
exactly while the event lives, never found for another event, and counted as what it
costs."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import grpc
import pytest

from broadcaster import Event, HubConfig, NamespaceConfig, Retention
from broadcaster.grpc import Server
from broadcaster.grpc._encode import EventEncoder
from broadcaster.grpc._event_cache import ENTRY_OVERHEAD, EncodedCache

from ._helpers import add, publish, read_events, read_kind, stub, wait_until


def _event(seq: int, payload: bytes = b"p") -> Event:
    return Event("ns", "/t", payload, "", {}, 1_700_000_000 * 10**9, seq, 0.0, 10)


def test_an_entry_lives_exactly_as_long_as_its_event() -> None:
    charged: list[tuple[int, int]] = []
    cache = EncodedCache(lambda event, size: charged.append((event.sequence, size)))
    kept, freed = _event(1), _event(2)
    cache.put(kept, b"one")
    cache.put(freed, b"two!")
    assert charged == [(1, 3 + ENTRY_OVERHEAD), (2, 4 + ENTRY_OVERHEAD)]
    assert cache.get_many([kept, freed, _event(3)]) == [b"one", b"two!", None]
    del freed
    assert len(cache) == 1 and cache.get(kept) == b"one"
    del kept
    assert len(cache) == 0


def test_an_id_left_by_a_freed_event_never_finds_its_bytes() -> None:
    """CPython gives a freed object's address (its id) to the next object of its size:
    the cache must forget the old event before anyone can ask about the new one."""
    cache = EncodedCache()
    reused = 0
    for seq in range(2000):
        event = _event(seq)
        old_id = id(event)
        cache.put(event, b"old")
        del event
        new = _event(seq)
        reused += id(new) == old_id
        assert cache.get(new) is None and cache.get_many([new]) == [None]
        del new
    assert reused > 1000  # the case did happen, most of the time
    assert len(cache) == 0


def test_a_disabled_cache_keeps_and_charges_nothing() -> None:
    charged: list[int] = []
    cache = EncodedCache(lambda event, size: charged.append(size))
    cache.enabled = False
    event = _event(1)
    cache.put(event, b"x")
    assert cache.get(event) is None and charged == [] and len(cache) == 0


@pytest.mark.parametrize("count", [3_000, 20_000, 50_000])
def test_entry_overhead_is_what_an_entry_costs(count: int) -> None:
    """What is charged per entry covers what it holds besides the data (measured; the
    dicts' share varies with how full they are)."""
    events = [_event(i, b"x" * 100) for i in range(count)]
    encoder = EventEncoder()
    encoder.field(_event(0))  # the encoder's own caches of names and seconds
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fields = encoder.fields(events)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    data = sum(len(f) for f in fields)
    per_entry = (grown - data - 8 * len(fields)) / count  # less the list returned
    assert 0.75 * ENTRY_OVERHEAD <= per_entry <= ENTRY_OVERHEAD, per_entry


@pytest.mark.anyio
@pytest.mark.usefixtures("shared_event_loop")
@pytest.mark.memory_only("copies are counted with the memory log's retained bytes; a durable "
                         "log's cache of events bounds itself and counts no copies")
async def test_the_hub_counts_what_the_server_keeps_while_two_streams_share_it(
        make_server: Any) -> None:
    """One stream: nothing kept, nothing counted. Two: each event's bytes once, counted
    with the event while it is retained, and gone with it."""
    hub_config = HubConfig(heartbeat_interval=3600.0, default_namespace=NamespaceConfig(
        retention=Retention(max_events=2)))
    server: Server = await make_server(hub=hub_config)

    def retained() -> int:
        return server.hub.statistics().namespaces["ns"].retained_bytes

    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        calls = []
        for sid in ("a", "b"):
            call = stub(channel).Subscribe()
            await call.write(add(sid, ("ns",)))
            await read_kind(call, "add_result")
            calls.append(call)
        calls[1].cancel()  # one stream left
        await wait_until(lambda: server.subscribe_streams == 1)
        await publish(channel, "ns", "/e")
        await read_events(calls[0], 1)
        alone = retained()  # one event, no copy
        call = stub(channel).Subscribe()  # two streams again
        await call.write(add("b", ("ns",)))
        await read_kind(call, "add_result")
        calls[1] = call
        await publish(channel, "ns", "/e")
        [(_, event)] = await read_events(calls[0], 1)
        await read_events(calls[1], 1)
        field = 2 + len(event.SerializeToString())  # 0x12, its length, the Event
        assert retained() == 2 * alone + field + ENTRY_OVERHEAD
        calls[1].cancel()
        await wait_until(lambda: server.subscribe_streams == 1)
        for _ in range(2):  # both events leave retention; the new ones carry no copy
            await publish(channel, "ns", "/e")
            await read_events(calls[0], 1)
        assert retained() == 2 * alone
        calls[0].cancel()

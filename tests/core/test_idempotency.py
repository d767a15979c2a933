"""Idempotent publishing: an event id stored within the deduplication window is not stored
again and its publish returns the original sequence (every log backend)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import trio.testing

from broadcaster import Event, HubConfig, InvalidArgument, PublishItem
from broadcaster._core._sqlite_store import LocalConfig, SqliteStore

from ._util import Broadcaster, drain


@pytest.mark.anyio
async def test_the_same_id_twice_is_stored_once() -> None:
    async with Broadcaster() as hub, hub.subscribe("a") as sub:
        first = await hub.publish("a", "/tasks/exit", b"exit", event_id="exit-c1")
        again = await hub.publish("a", "/tasks/exit", b"exit", event_id="exit-c1")
        other = await hub.publish("a", "/tasks/exit", b"other", event_id="exit-c2")
        plain = await hub.publish("a", "/tasks/exit", b"plain")
        assert (first, again, other, plain) == (1, 1, 2, 3)
        got = [i for i in drain(sub) if isinstance(i, Event)]
        assert [(e.sequence, e.payload) for e in got] == [(1, b"exit"), (2, b"other"),
                                                          (3, b"plain")]
        stats = hub.statistics().namespaces["a"]
        assert (stats.head, stats.published, stats.deduplicated) == (3, 3, 1)


@pytest.mark.anyio
async def test_ids_are_per_namespace() -> None:
    async with Broadcaster() as hub:
        assert await hub.publish("a", "/x", event_id="same") == 1
        assert await hub.publish("b", "/x", event_id="same") == 1
        assert await hub.publish("b", "/x", event_id="same") == 1
        assert hub.statistics().namespaces["b"].head == 1


@pytest.mark.anyio
async def test_a_batch_sent_again_is_stored_once_and_gets_its_sequences() -> None:
    batch = [PublishItem("/x", str(i).encode(), event_id=f"e{i}") for i in range(5)]
    async with Broadcaster() as hub:
        assert await hub.publish_many("a", batch) == [1, 2, 3, 4, 5]
        # the same batch again (a publisher re-sending after a failover), with one new event
        resent = [*batch[2:], PublishItem("/x", b"new", event_id="e5")]
        assert await hub.publish_many("a", resent) == [3, 4, 5, 6]
        assert hub.statistics().namespaces["a"].head == 6


@pytest.mark.anyio
async def test_a_batch_repeating_an_id_stores_it_once() -> None:
    async with Broadcaster() as hub:
        items = [PublishItem("/x", b"1", event_id="dup"), PublishItem("/x", b"2"),
                 PublishItem("/x", b"3", event_id="dup")]
        seqs = await hub.publish_many("a", items)
        assert seqs[0] == seqs[2] and seqs[1] != seqs[0]
        assert hub.statistics().namespaces["a"].head == 2


@pytest.mark.anyio
async def test_bad_ids_are_refused_naming_the_item() -> None:
    async with Broadcaster() as hub:
        with pytest.raises(InvalidArgument, match=r"^event_id: must be a non-empty string"):
            await hub.publish("a", "/x", event_id="")
        with pytest.raises(InvalidArgument, match=r"^items\[1\]\.event_id: 'has space' must "
                                                  r"be printable ASCII without spaces"):
            await hub.publish_many("a", [PublishItem("/x", event_id="ok"),
                                         PublishItem("/x", event_id="has space")])
        with pytest.raises(InvalidArgument, match=r"^event_id: is longer than 128"):
            await hub.publish("a", "/x", event_id="x" * 129)
        assert hub.namespace_names() == []  # nothing was created


@pytest.mark.trio
@pytest.mark.memory_only("the memory log's window is HubConfig's; local and jetstream "
                         "have their own settings (tests/logs)")
async def test_an_id_is_forgotten_after_the_window(
    autojump_clock: trio.testing.MockClock
) -> None:
    async with Broadcaster(HubConfig(dedup_window=10.0, heartbeat_interval=1.0)) as hub:
        assert await hub.publish("a", "/x", event_id="late") == 1
        await anyio.sleep(5.0)
        assert await hub.publish("a", "/x", event_id="late") == 1
        await anyio.sleep(6.0)
        assert await hub.publish("a", "/x", event_id="late") == 2


@pytest.mark.anyio
@pytest.mark.memory_only("builds its own local store, to restart it on the same directory")
async def test_a_local_log_remembers_ids_across_a_restart(tmp_path: Path) -> None:
    for expected in (1, 1):
        async with Broadcaster(store=SqliteStore(LocalConfig(tmp_path))) as hub:
            assert await hub.publish("a", "/tasks/exit", event_id="exit-c9") == expected
    async with Broadcaster(store=SqliteStore(LocalConfig(tmp_path))) as hub:
        assert await hub.publish("a", "/tasks/exit", event_id="exit-c10") == 2

"""The ``local`` engine (SQLite in WAL mode): sequences, retention on disk, epochs,
deduplication and the fsync modes, on asyncio and trio (virtual clock)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from broadcaster import InvalidArgument, Retention
from broadcaster._core._durable import FsyncMode, StorageError
from broadcaster._core._sqlite_db import DB_NAME
from broadcaster._core._sqlite_store import LocalConfig, SqliteLog, SqliteStore

from ._util import Recorder, item

pytestmark = pytest.mark.anyio

SMALL = Retention(max_events=1000, max_bytes=1 << 30, max_age=3600.0)


class Wall:
    """A wall clock that follows the event loop's clock, plus a jump set by the test."""

    def __init__(self) -> None:
        self.jump = 0.0

    def __call__(self) -> int:
        return 1_700_000_000_000_000_000 + int((anyio.current_time() + self.jump) * 1e9)


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def opener(tmp_path: Path, wall: Wall, anyio_backend_name: str) -> Callable[..., Any]:
    # on trio's virtual clock the database runs on the loop: while a worker thread
    # commits, every task is blocked and the clock jumps (a bounded wait for the commit
    # then ran out in virtual time, under load)
    threads = anyio_backend_name == "asyncio"

    @asynccontextmanager
    async def open_store(**settings: Any) -> AsyncIterator[SqliteStore]:
        config = LocalConfig(tmp_path / "data", **settings)
        async with SqliteStore(config, wall_clock=wall, threads=threads) as store:
            yield store

    return open_store


def rows(tmp_path: Path, ns: str = "default") -> list[int]:
    """The sequences on disk, read by another connection."""
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        return [r[0] for r in conn.execute(
            "SELECT seq FROM events JOIN namespaces ON ns = id WHERE name = ? ORDER BY seq",
            (ns,))]


def read_all(log: SqliteLog, start: int = 1) -> list[int]:
    """Every retained sequence from *start*, read as a cursor would (prefix by prefix)."""
    seqs: list[int] = []
    for _ in range(100_000):
        events = log.read(start, log.head + 1)
        if not events:
            return seqs
        seqs.extend(e.sequence for e in events)
        start = events[-1].sequence + 1
    raise AssertionError("read never ended")


async def test_append_assigns_sequences_and_feeds_the_listener(opener: Any) -> None:
    async with opener() as store:
        rec = Recorder()
        log = await store.open_log("default", SMALL, rec)
        stored = await log.append([item(1), item(2, labels={"a": "b"})], anyio.current_time())
        assert [s.sequence for s in stored] == [1, 2] and not any(s.duplicate for s in stored)
        assert (log.head, log.first) == (2, 1)
        assert rec.sequences == [1, 2]
        assert rec.events[1].labels == {"a": "b"} and rec.events[1].payload == b"2"
        assert [e.sequence for e in log.read(1, 3)] == [1, 2]


async def test_reopen_keeps_sequences_epoch_and_events(opener: Any, tmp_path: Path) -> None:
    timestamps = [-(10**18) * 62, 0, 253_402_300_799 * 10**9]  # year 1, 1970, year 9999
    async with opener() as store:
        epoch = store.epoch
        assert store.epoch_reason == "created"
        log = await store.open_log("ns.a_b-c", SMALL, Recorder())
        await log.append([item(i, timestamp_ns=ts, labels={"k": str(i)})
                          for i, ts in enumerate(timestamps)], anyio.current_time())
    async with opener() as store:
        assert (store.epoch, store.epoch_reason) == (epoch, "")
        log = await store.open_log("ns.a_b-c", SMALL, Recorder())
        assert (log.first, log.head) == (1, 3)
        events = log.read(1, 4)
        assert [e.timestamp_ns for e in events] == timestamps
        assert [e.labels for e in events] == [{"k": "0"}, {"k": "1"}, {"k": "2"}]
        stored = await log.append([item("next")], anyio.current_time())
        assert stored[0].sequence == 4


async def test_namespaces_have_their_own_sequences(opener: Any) -> None:
    async with opener() as store:
        a = await store.open_log("a", SMALL, Recorder())
        b = await store.open_log("b", SMALL, Recorder())
        now = anyio.current_time()
        await a.append([item(1), item(2)], now)
        assert (await b.append([item(1)], now))[0].sequence == 1
        assert await store.open_log("a", SMALL, Recorder()) is a


async def test_retention_by_count_is_applied_on_disk(opener: Any, tmp_path: Path) -> None:
    retention = Retention(max_events=5, max_bytes=1 << 30, max_age=3600)
    async with opener() as store:
        log = await store.open_log("default", retention, Recorder())
        for i in range(12):
            await log.append([item(i)], anyio.current_time())
        assert (log.first, log.head) == (8, 12)
        assert read_all(log) == [8, 9, 10, 11, 12]
    assert rows(tmp_path) == [8, 9, 10, 11, 12]
    async with opener() as store:
        log = await store.open_log("default", retention, Recorder())
        assert (log.first, log.head) == (8, 12)


async def test_retention_by_bytes_is_applied_on_disk(opener: Any, tmp_path: Path) -> None:
    size = item(0, size=1000).size
    retention = Retention(max_events=1000, max_bytes=3 * size, max_age=3600)
    async with opener() as store:
        log = await store.open_log("default", retention, Recorder())
        await log.append([item(i, size=1000) for i in range(10)], anyio.current_time())
        assert (log.first, log.head, log.retained_bytes) == (8, 10, 3 * size)
        await log.append([item("x")], anyio.current_time())  # carries the deletion
    assert rows(tmp_path) == [9, 10, 11]


async def test_retention_by_age_is_applied_on_disk_and_across_a_restart(
    opener: Any, tmp_path: Path, wall: Wall
) -> None:
    retention = Retention(max_events=1000, max_bytes=1 << 30, max_age=60)
    async with opener() as store:
        log = await store.open_log("default", retention, Recorder())
        t0 = anyio.current_time()  # times are passed in: no real waiting on asyncio
        await log.append([item(1), item(2)], t0)
        await log.append([item(3)], t0 + 40)
        commits = store.commits
        log.trim(t0 + 70)
        assert (log.first, log.head) == (3, 3)
        with anyio.fail_after(5):
            while store.commits == commits:
                await anyio.sleep(0.01)
    assert rows(tmp_path) == [3]
    wall.jump = 3600  # the server was down for an hour
    async with opener() as store:
        log = await store.open_log("default", retention, Recorder())
        assert (log.first, log.head, log.retained_bytes) == (4, 3, 0)
        assert (await log.append([item(4)], anyio.current_time()))[0].sequence == 4
    assert rows(tmp_path) == [4]


async def test_reads_below_the_cache_come_from_disk_in_order(opener: Any) -> None:
    async with opener(cache_events=10, read_chunk=16) as store:
        log = await store.open_log("default", SMALL, Recorder())
        await log.append([item(i) for i in range(100)], anyio.current_time())
        assert log.cached_from == 91
        assert read_all(log) == list(range(1, 101))
        assert read_all(log, 37) == list(range(37, 101))
        assert [e.payload for e in log.read(5, 7)] == [b"4", b"5"]
        assert len(log.read(1, 101)) <= 16  # one chunk at a time
    async with opener(cache_events=10, read_chunk=16) as store:
        log = await store.open_log("default", SMALL, Recorder())
        assert (log.cached_from, read_all(log)) == (91, list(range(1, 101)))


async def test_a_repeated_event_id_returns_the_original_sequence(opener: Any) -> None:
    async with opener(dedup_window=30) as store:
        log = await store.open_log("default", SMALL, Recorder())
        now = anyio.current_time()
        first = await log.append([item(1, event_id="a"), item(2, event_id="b")], now)
        again = await log.append([item(9, event_id="b"), item(3, event_id="c"),
                                  item(4, event_id="c")], now)
        assert [tuple(s) for s in first] == [(1, False), (2, False)]
        assert [tuple(s) for s in again] == [(2, True), (3, False), (3, True)]
        assert log.head == 3
    async with opener(dedup_window=30) as store:  # the window survives a restart
        log = await store.open_log("default", SMALL, Recorder())
        assert tuple((await log.append([item(1, event_id="a")], anyio.current_time()))[0]) == (
            1, True)
        later = anyio.current_time() + 31
        log.trim(later)
        assert tuple((await log.append([item(1, event_id="a")], later))[0]) == (4, False)


@pytest.mark.parametrize("mode", ["always", "batch"])
async def test_acknowledged_appends_are_committed(opener: Any, tmp_path: Path,
                                                  mode: str) -> None:
    async with opener(fsync=mode) as store:
        sync = store._db._writer.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
        assert sync == (2 if mode == "always" else 1)  # FULL, NORMAL
        log = await store.open_log("default", SMALL, Recorder())
        for i in range(3):
            await log.append([item(i)], anyio.current_time())
            assert rows(tmp_path) == list(range(1, i + 2))


async def test_concurrent_appends_share_transactions(opener: Any, tmp_path: Path) -> None:
    async with opener(fsync="batch") as store:
        rec = Recorder()
        log = await store.open_log("default", SMALL, rec)
        results: list[int] = []

        async def publisher(n: int) -> None:
            for i in range(20):
                results.extend(s.sequence for s in await log.append(
                    [item(f"{n}.{i}")], anyio.current_time()))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(publisher, n)
        assert sorted(results) == list(range(1, 201))
        assert rec.sequences == list(range(1, 201))
        assert store.commits < 200
    assert rows(tmp_path) == list(range(1, 201))


async def test_interval_acknowledges_at_once_and_commits_later(opener: Any,
                                                               tmp_path: Path) -> None:
    async with opener(fsync="interval", fsync_interval=0.5, cache_events=2) as store:
        rec = Recorder()
        log = await store.open_log("default", SMALL, rec)
        start = anyio.current_time()
        await log.append([item(i) for i in range(5)], start)
        assert rec.sequences == [1, 2, 3, 4, 5] and rows(tmp_path) == []
        assert read_all(log) == [1, 2, 3, 4, 5]  # uncommitted events stay in memory
        with anyio.fail_after(5):
            while store.commits == 0:
                await anyio.sleep(0.01)
        assert rows(tmp_path) == [1, 2, 3, 4, 5]
        assert log.cached_from == 4 and read_all(log) == [1, 2, 3, 4, 5]


async def test_a_failed_write_acknowledges_nothing_and_leaves_no_gap(
    opener: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opener() as store:
        rec = Recorder()
        log = await store.open_log("default", SMALL, rec)
        await log.append([item(1)], anyio.current_time())
        real_write = store._db.write

        def broken(batch: Any) -> None:
            raise StorageError("data_dir", "disk full")

        monkeypatch.setattr(store._db, "write", broken)
        with pytest.raises(StorageError, match="disk full"):
            await log.append([item(2, event_id="x")], anyio.current_time())
        monkeypatch.setattr(store._db, "write", real_write)
        stored = await log.append([item(2, event_id="x")], anyio.current_time())
        assert tuple(stored[0]) == (2, False)
        assert rec.sequences == [1, 2]


async def test_a_data_dir_is_used_by_one_store_at_a_time(opener: Any) -> None:
    async with opener():
        with pytest.raises(StorageError, match="data_dir: .* is in use by pid"):
            async with opener():
                pass
    async with opener():  # released on close
        pass


async def test_a_foreign_database_is_refused(opener: Any, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(StorageError, match="is not a broadcaster log"):
        async with opener():
            pass


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="fsync: 'sometimes' is not one of"):
        LocalConfig(tmp_path, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="fsync_interval: must be positive"):
        LocalConfig(tmp_path, fsync_interval=0)
    with pytest.raises(InvalidArgument, match="cache_events: must be at least 1"):
        LocalConfig(tmp_path, cache_events=0)
    assert LocalConfig(str(tmp_path), fsync="batch").fsync is FsyncMode.BATCH  # type: ignore[arg-type]

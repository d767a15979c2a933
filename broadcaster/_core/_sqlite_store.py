"""The ``local`` engine: history in one SQLite database (WAL mode) in a data directory.

One writer task owns every write and runs each transaction in a worker thread, so the
event loop never waits for the disk: appends made while a transaction is being written
all go into the next one (group commit). When an append is acknowledged depends on
:class:`FsyncMode`:

``always``
    its transaction is committed with ``synchronous=FULL`` (the WAL is fsynced): it
    survives ``kill -9`` and a power cut.
``batch``
    its transaction is committed with ``synchronous=NORMAL`` (written to the operating
    system, fsynced at checkpoints): it survives ``kill -9`` of the server; a power cut
    or kernel crash can lose the transactions since the last checkpoint.
``interval``
    at once; a transaction commits every ``fsync_interval`` seconds: ``kill -9`` loses
    the events of the last interval at most, a power cut as with ``batch``.

Events enter the local view (and reach subscribers) once committed under ``always`` and
``batch``, at once under ``interval``. A run that may have lost events it showed (an
unclean stop under ``interval``, or under ``batch`` followed by a reboot) starts a new
epoch, so that a resuming subscriber resyncs rather than trusting a reused sequence.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._config import Retention
from ._dedup import DedupWindow
from ._durable import (
    DEFAULT_DEDUP_MAX_IDS,
    DEFAULT_DEDUP_WINDOW,
    FsyncMode,
    LogListener,
    NewEvent,
    StorageError,
    Stored,
)
from ._errors import InvalidArgument
from ._memory_store import assign
from ._sqlite_db import (
    Database,
    EventRow,
    Loaded,
    WriteBatch,
    decode_labels,
    encode_labels,
)
from ._types import Event
from ._view import HistoryView

__all__ = ["LocalConfig", "SqliteLog", "SqliteStore"]

logger = logging.getLogger("broadcaster.local")

T = TypeVar("T")

_CHUNKS_KEPT = 16  # chunks of older history kept per namespace for replaying readers
_CHUNK_BYTES = 4 * 1024 * 1024  # a read of older history stops past this many bytes


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """Settings of the ``local`` engine.

    :ivar data_dir: the directory of the database (created if missing)
    :ivar fsync: when an append is acknowledged (:class:`FsyncMode`)
    :ivar fsync_interval: seconds between commits under ``fsync = "interval"``
    :ivar cache_events: newest events per namespace kept in memory; older ones are read
        from the database in chunks of ``read_chunk``
    :ivar cache_bytes: the same bound in bytes (event sizes as retention counts them)
    :ivar read_chunk: events per read of older history
    :ivar dedup_window: seconds an event id is remembered
    :ivar dedup_max_ids: ids remembered per namespace at most
    """

    data_dir: Path
    fsync: FsyncMode = FsyncMode.ALWAYS
    fsync_interval: float = 0.05
    cache_events: int = 16_384
    cache_bytes: int = 16 * 1024 * 1024
    read_chunk: int = 256
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    dedup_max_ids: int = DEFAULT_DEDUP_MAX_IDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        try:
            object.__setattr__(self, "fsync", FsyncMode(self.fsync))
        except ValueError:
            raise InvalidArgument(
                "fsync", f"{self.fsync!r} is not one of 'always', 'batch', 'interval'"
            ) from None
        if not self.fsync_interval > 0:
            raise InvalidArgument("fsync_interval", "must be positive")
        for name in ("cache_events", "cache_bytes", "read_chunk", "dedup_max_ids"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, "must be at least 1")
        if not self.dedup_window >= 0:
            raise InvalidArgument("dedup_window", "must be zero or positive")


class _Job:
    """One append waiting for its transaction."""

    __slots__ = ("dedup", "done", "error", "events", "log")

    def __init__(self, log: SqliteLog, events: list[Event],
                 dedup: list[tuple[str, int]], wait: bool) -> None:
        self.log = log
        self.events = events
        self.dedup = dedup
        self.done = anyio.Event() if wait else None
        self.error: BaseException | None = None


class SqliteStore:
    """Opens the logs of one data directory. Enter it before use; leaving it commits
    what is pending and records a clean shutdown.

    :param config: the engine's settings
    :param wall_clock: wall-clock nanoseconds (stored with each event, for retention by
        age across restarts); monotonic time comes from ``anyio.current_time()``
    :param threads: run the database's writes in a worker thread (the default), so that
        the event loop never waits for the disk; False runs them on the event loop, which
        each commit then blocks (for tests on a virtual clock, which a thread's real
        time would make jump)
    """

    def __init__(self, config: LocalConfig, *, wall_clock: Callable[[], int] = time.time_ns,
                 threads: bool = True):
        self.config = config
        self._db = Database(config.data_dir, config.fsync)
        self._wall_clock = wall_clock
        self._threads = threads
        self._limiter = anyio.CapacityLimiter(1)
        self._logs: dict[str, SqliteLog] = {}
        self._queue: list[_Job] = []
        self._maintenance = WriteBatch()
        self._wake: anyio.Event | None = None
        self._stopped = anyio.Event()
        self._tg: TaskGroup | None = None
        self._closing = False
        self._broken: StorageError | None = None
        self._mono0 = 0.0
        self._wall0 = 0
        #: transactions committed (for tests and statistics)
        self.commits = 0

    @property
    def epoch(self) -> str:
        """The data directory's epoch (see :attr:`epoch_reason`)."""
        return self._db.epoch

    @property
    def epoch_reason(self) -> str:
        """Why the epoch is new this run: ``"created"``, ``"unclean_shutdown"``, or
        ``""`` when it is the one of the last run."""
        return self._db.epoch_reason

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` in the worker thread (or on the loop without threads)."""
        if self._threads:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        await anyio.lowlevel.checkpoint()
        return func(*args)

    async def __aenter__(self) -> SqliteStore:
        await self._run(self._db.open)
        self._mono0, self._wall0 = anyio.current_time(), self._wall_clock()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._write_loop, name="broadcaster local log writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closing = True
        self._kick()
        try:
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()  # the writer commits what is pending, then ends
        finally:
            try:
                await self._tg.__aexit__(None, None, None)  # its one task has ended
            finally:
                with anyio.CancelScope(shield=True):
                    clean = self._broken is None and not self._queue
                    await self._run(self._db.close, clean)

    async def open_log(
        self, namespace: str, retention: Retention, listener: LogListener
    ) -> SqliteLog:
        """The log of *namespace*, loaded from disk (created on first use)."""
        log = self._logs.get(namespace)
        if log is not None:
            return log
        self.check()
        config, now = self.config, anyio.current_time()
        dedup_since = self.wall_at(now - config.dedup_window)
        loaded = await self._run(
            self._db.load, namespace, retention.max_events, config.cache_events,
            dedup_since, config.dedup_max_ids)
        log = self._logs.get(namespace)  # opened meanwhile by another task
        if log is None:
            log = SqliteLog(self, namespace, loaded.ns_id, retention, listener)
            log._load(loaded, now)
            self._logs[namespace] = log
        return log

    # -- clocks ---------------------------------------------------------------------------

    def wall_at(self, mono: float) -> int:
        """Wall-clock nanoseconds at the monotonic time *mono*."""
        return self._wall0 + int((mono - self._mono0) * 1e9)

    def mono_at(self, wall_ns: int) -> float:
        return self._mono0 + (wall_ns - self._wall0) / 1e9

    # -- the writer -------------------------------------------------------------------------

    def check(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._closing:
            raise anyio.ClosedResourceError

    def submit(self, job: _Job) -> None:
        self._queue.append(job)
        self._kick()

    def maintain(self) -> WriteBatch:
        """The batch of deletions that the next transaction carries."""
        self._kick()
        return self._maintenance

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def _write_loop(self) -> None:
        interval = self.config.fsync is FsyncMode.INTERVAL
        try:
            while True:
                if not self._queue and not self._maintenance:
                    if self._closing:
                        return
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                if interval and not self._closing:
                    await anyio.sleep(self.config.fsync_interval)
                jobs, self._queue = self._queue, []
                batch, self._maintenance = self._maintenance, WriteBatch()
                for job in jobs:
                    self._add(batch, job)
                try:
                    await self._run(self._db.write, batch)
                except StorageError as exc:
                    self._failed(jobs, exc)
                    continue
                self.commits += 1
                for job in jobs:
                    job.log._committed(job)
        finally:
            self._stopped.set()

    def _add(self, batch: WriteBatch, job: _Job) -> None:
        ns_id, wall_at = job.log.ns_id, self.wall_at
        rows = batch.events
        for e in job.events:
            ts_s, ts_ns = divmod(e.timestamp_ns, 1_000_000_000)
            rows.append((ns_id, e.sequence, wall_at(e.published_at), ts_s, ts_ns, e.size,
                         e.topic, e.type_url, encode_labels(e.labels), bytes(e.payload)))
        if job.dedup:
            at = wall_at(job.events[0].published_at)
            batch.dedup.extend((ns_id, event_id, seq, at) for event_id, seq in job.dedup)
        if job.events:
            batch.heads[ns_id] = job.events[-1].sequence

    def _failed(self, jobs: list[_Job], exc: StorageError) -> None:
        if self.config.fsync is FsyncMode.INTERVAL:
            # acknowledged and shown already: the history cannot be trusted any more
            logger.error("the local log lost acknowledged events: %s", exc)
            self._broken = exc
            for job in self._queue:
                job.log._rollback(job)
            self._queue.clear()
            return
        logger.error("the local log could not store %d appends: %s", len(jobs), exc)
        failed, self._queue = [*jobs, *self._queue], []
        for job in failed:  # later appends had sequences after the failed ones
            job.log._rollback(job)
            job.error = exc
            if job.done is not None:
                job.done.set()


class SqliteLog:
    """One namespace's history in the data directory, its newest events cached."""

    def __init__(self, store: SqliteStore, namespace: str, ns_id: int,
                 retention: Retention, listener: LogListener) -> None:
        config = store.config
        self._store = store
        self._namespace = namespace
        self.ns_id = ns_id
        self._retention = retention
        self._listener = listener
        self._view = HistoryView(retention, config.cache_events, config.cache_bytes)
        self._dedup = DedupWindow(config.dedup_window, config.dedup_max_ids)
        self._assigned = 0  # the newest sequence given to an append
        self._deleted_below = 1  # events below this are deleted on disk (or will be)
        self._chunks: OrderedDict[int, list[Event]] = OrderedDict()

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def epoch(self) -> str:
        return self._store.epoch

    @property
    def head(self) -> int:
        return self._view.head

    @property
    def first(self) -> int:
        return self._view.first

    @property
    def retained_bytes(self) -> int:
        return self._view.retained_bytes

    @property
    def cached_from(self) -> int:
        """The oldest sequence held in memory."""
        return self._view.cache_first

    # -- loading ---------------------------------------------------------------------------

    def _load(self, loaded: Loaded, now: float) -> None:
        store, view = self._store, self._view
        events = [self._event(row) for row in loaded.rows]
        if loaded.window:
            view.skip_to(loaded.window[0][0])
        elif events:
            view.skip_to(events[0].sequence)
        for seq, size, stored_ns in loaded.window:
            self._check_follows(seq)
            view.note(size, store.mono_at(stored_ns))
        if events:
            self._check_follows(events[0].sequence)
            view.add(events)
        if view.head < loaded.head:  # retention emptied the namespace
            view.skip_to(loaded.head + 1)
        view.trim(now)
        self._assigned = view.head
        for event_id, seq, stored_ns in loaded.dedup:
            self._dedup.put(event_id, seq, store.mono_at(stored_ns))
        self._request_delete()

    def _check_follows(self, seq: int) -> None:
        if seq != self._view.head + 1:
            raise StorageError("data_dir", f"namespace {self._namespace!r}: event {seq} "
                               f"does not follow {self._view.head} on disk")

    def _event(self, row: EventRow) -> Event:
        seq, stored_ns, ts_s, ts_ns, size, topic, type_url, labels, payload = row
        return Event(self._namespace, topic, payload, type_url, decode_labels(labels),
                     ts_s * 1_000_000_000 + ts_ns, seq, self._store.mono_at(stored_ns), size)

    # -- the view ----------------------------------------------------------------------------

    def read(self, start: int, stop: int) -> Sequence[Event]:
        view = self._view
        events = view.read(start, stop)
        if events is not None:
            return events
        start = max(start, view.first)
        stop = min(stop, view.cache_first)
        chunk = self._chunk(start)
        if not chunk or chunk[-1].sequence < start:  # partial chunk: read past it
            chunk = self._fetch(start, stop)
            return chunk
        i = start - chunk[0].sequence
        return chunk[i : i + stop - start]

    def _chunk(self, start: int) -> list[Event]:
        size = self._store.config.read_chunk
        number = (start - 1) // size
        chunk = self._chunks.get(number)
        if chunk is not None:
            self._chunks.move_to_end(number)
            return chunk
        lo = number * size + 1
        chunk = self._fetch(max(lo, start), min(lo + size, self._view.cache_first))
        if chunk and chunk[0].sequence == lo:  # (a chunk that starts later is not shared)
            self._chunks[number] = chunk
            if len(self._chunks) > _CHUNKS_KEPT:
                self._chunks.popitem(last=False)
        return chunk

    def _fetch(self, start: int, stop: int) -> list[Event]:
        rows = self._store._db.read(self.ns_id, start, stop, self._store.config.read_chunk)
        events, total = [], 0
        for row in rows:
            events.append(self._event(row))
            total += row[4]
            if total > _CHUNK_BYTES:
                break
        return events

    def trim(self, now: float) -> None:
        if self._view.trim(now):
            self._request_delete()
        if not len(self._dedup):
            return
        self._dedup.expire(now)
        config = self._store.config
        batch = self._store.maintain()
        batch.dedup_expiry[self.ns_id] = (self._store.wall_at(now - config.dedup_window),
                                          config.dedup_max_ids)

    def _request_delete(self) -> None:
        first = self._view.first
        if first > self._deleted_below:
            self._deleted_below = first
            self._store.maintain().deletes[self.ns_id] = first
            for number in [n for n, c in self._chunks.items() if c[-1].sequence < first]:
                del self._chunks[number]

    # -- appending ---------------------------------------------------------------------------

    async def append(self, items: Sequence[NewEvent], now: float,
                     submitted: Callable[[], None] | None = None) -> list[Stored]:
        store = self._store
        store.check()
        events, results = assign(self._namespace, self._assigned, items, now, self._dedup)
        if submitted is not None:
            submitted()  # the sequences are assigned: later appends come after
        if not events:
            return results
        self._assigned = events[-1].sequence
        dedup = [(item.event_id, r.sequence) for item, r in zip(items, results, strict=True)
                 if item.event_id is not None and not r.duplicate]
        interval = store.config.fsync is FsyncMode.INTERVAL
        job = _Job(self, events, dedup, wait=not interval)
        store.submit(job)
        if interval:
            if not self._uncommitted():
                self._view.pin(events[0].sequence)
            self._show(events)
            return results
        assert job.done is not None
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return results

    def _uncommitted(self) -> bool:
        return self._view._pinned < (1 << 63)

    def _committed(self, job: _Job) -> None:
        if self._store.config.fsync is FsyncMode.INTERVAL:
            last = job.events[-1].sequence
            self._view.pin(None if last >= self._view.head else last + 1)
            return
        self._show(job.events)
        assert job.done is not None
        job.done.set()

    def _show(self, events: list[Event]) -> None:
        self._view.add(events)
        self._request_delete()
        self._listener.events_added(self._namespace, events)

    def _rollback(self, job: _Job) -> None:
        self._assigned = self._view.head
        for event_id, _ in job.dedup:
            self._dedup.forget(event_id)

"""The ``local`` engine's database: one SQLite file in WAL mode in the data directory.

Blocking code only: :class:`SqliteStore` calls the writing side from worker threads,
one call at a time, and reads with :meth:`Database.read` on the event loop.

Tables: ``meta`` (epoch, clean-shutdown flag, boot id, fsync mode of the last run),
``namespaces`` (id, name, head: the newest sequence assigned, kept even when retention
emptied the namespace), ``events`` (per namespace and sequence) and ``dedup`` (client
event ids and their sequences, kept for the deduplication window whatever retention
does to the events).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._durable import FsyncMode, StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DB_NAME", "Database", "EventRow", "Loaded", "WriteBatch"]

logger = logging.getLogger("broadcaster.local")

DB_NAME = "broadcaster.sqlite3"
_LOCK_NAME = "broadcaster.lock"
_APPLICATION_ID = 0x42435354  # "BCST": marks our databases
_SCHEMA_VERSION = 1
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS namespaces (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    ns INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    stored_ns INTEGER NOT NULL,
    ts_s INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    topic TEXT NOT NULL,
    type_url TEXT NOT NULL,
    labels TEXT,
    payload BLOB NOT NULL,
    PRIMARY KEY (ns, seq)
);
CREATE TABLE IF NOT EXISTS dedup (
    ns INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    stored_ns INTEGER NOT NULL,
    PRIMARY KEY (ns, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_by_age ON dedup (ns, stored_ns);
"""

#: (seq, stored_ns, ts_s, ts_ns, size, topic, type_url, labels, payload)
EventRow = tuple[int, int, int, int, int, str, str, "str | None", bytes]


def encode_labels(labels: Mapping[str, str]) -> str | None:
    return json.dumps(labels, separators=(",", ":")) if labels else None


def decode_labels(text: str | None) -> dict[str, str]:
    return json.loads(text) if text else {}


@dataclass(slots=True)
class WriteBatch:
    """Everything one transaction writes."""

    #: (ns, seq, stored_ns, ts_s, ts_ns, size, topic, type_url, labels, payload)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    #: (ns, event_id, seq, stored_ns)
    dedup: list[tuple[int, str, int, int]] = field(default_factory=list)
    #: namespace id -> newest sequence assigned
    heads: dict[int, int] = field(default_factory=dict)
    #: namespace id -> oldest sequence to keep
    deletes: dict[int, int] = field(default_factory=dict)
    #: namespace id -> (ids older than this stored_ns go, ids kept at most)
    dedup_expiry: dict[int, tuple[int, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.dedup or self.heads or self.deletes
                    or self.dedup_expiry)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A namespace as found on disk."""

    ns_id: int
    head: int
    #: (seq, size, stored_ns) of the retained events that the cache will not hold
    window: list[tuple[int, int, int]]
    #: the newest rows, for the cache
    rows: list[EventRow]
    #: (event_id, seq, stored_ns) within the deduplication window, oldest first
    dedup: list[tuple[str, int, int]]


def boot_id() -> str | None:
    """This boot of the machine (Linux), or None."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


class Database:
    """The data directory's database, opened by one process at a time."""

    def __init__(self, data_dir: str | os.PathLike[str], fsync: FsyncMode) -> None:
        self.path = Path(data_dir)
        self.fsync = fsync
        self.epoch = ""
        #: why the epoch is new this run ("created", "unclean_shutdown", "") for the log
        self.epoch_reason = ""
        self._lock_fd: int | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    # -- opening and closing ---------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, create or check the schema, settle the epoch.

        :raises StorageError: if the directory is in use or the file is not ours
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._writer = self._connect()
            self._check_schema(self._writer)
            self._settle_epoch(self._writer)
            self._reader = self._connect()
        except sqlite3.Error as exc:
            self.close(clean=False)
            raise StorageError("data_dir", f"{self.path / DB_NAME}: {exc}") from exc
        except BaseException:
            self.close(clean=False)
            raise

    def _lock(self) -> None:
        lock_path = self.path / _LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = lock_path.read_text().strip() or "another process"
                raise StorageError(
                    "data_dir", f"{self.path} is in use by {holder}"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._lock_fd = fd

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path / DB_NAME, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        full = self.fsync is FsyncMode.ALWAYS
        conn.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StorageError("data_dir", f"{self.path / DB_NAME} is not a broadcaster log")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        elif app_id != _APPLICATION_ID:
            raise StorageError("data_dir", f"{self.path / DB_NAME} is not a broadcaster log")
        elif version != _SCHEMA_VERSION:
            raise StorageError(
                "data_dir",
                f"{self.path / DB_NAME} has schema version {version}, this broadcaster "
                f"reads version {_SCHEMA_VERSION}",
            )

    def _settle_epoch(self, conn: sqlite3.Connection) -> None:
        """Keep the epoch unless the last run may have lost acknowledged events (then a
        resumed subscriber must resync instead of trusting reused sequences)."""
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        boot = boot_id()
        epoch, reason = meta.get("epoch"), ""
        if epoch is None:
            reason = "created"
        elif meta.get("clean") == "0":
            last_mode = meta.get("fsync")
            if last_mode == FsyncMode.INTERVAL:
                reason = "unclean_shutdown"  # acknowledged before committed
            elif last_mode == FsyncMode.BATCH and (boot is None or meta.get("boot") != boot):
                reason = "unclean_shutdown"  # committed, not fsynced, and the machine restarted
        if reason:
            epoch = uuid.uuid4().hex[:16]
            if reason != "created":
                logger.warning(
                    "the last run (fsync=%s) did not shut down cleanly%s: new epoch %s, "
                    "resuming subscribers will resync", meta.get("fsync"),
                    "" if meta.get("fsync") == FsyncMode.INTERVAL else " and the machine "
                    "restarted", epoch)
        assert epoch is not None
        self.epoch, self.epoch_reason = epoch, reason
        values = {"epoch": epoch, "clean": "0", "fsync": self.fsync.value, "boot": boot or ""}
        conn.execute("PRAGMA synchronous=FULL")  # the epoch decision itself is durable
        with _transaction(conn):
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync is FsyncMode.ALWAYS else 'NORMAL'}")

    def close(self, clean: bool = True) -> None:
        """Close; *clean* records that every acknowledged event was committed."""
        if self._writer is not None and clean:
            try:
                self._writer.execute("PRAGMA synchronous=FULL")
                with _transaction(self._writer):
                    self._writer.execute("UPDATE meta SET value='1' WHERE key='clean'")
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                logger.exception("could not record the clean shutdown of %s", self.path)
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- namespaces --------------------------------------------------------------------

    def load(self, name: str, max_events: int, cache_events: int,
             dedup_since: int, dedup_max: int) -> Loaded:
        """The namespace *name* (created if new): its head, the sizes and times of its
        newest *max_events* events, the newest *cache_events* rows, and its dedup ids."""
        conn = self._conn(self._writer)
        with _transaction(conn):
            conn.execute("INSERT OR IGNORE INTO namespaces (name) VALUES (?)", (name,))
            ns_id, head = conn.execute(
                "SELECT id, head FROM namespaces WHERE name = ?", (name,)
            ).fetchone()
        low = max(1, head - max_events + 1)
        cached_from = max(low, head - cache_events + 1)
        window = conn.execute(
            "SELECT seq, size, stored_ns FROM events WHERE ns = ? AND seq >= ? AND seq < ? "
            "ORDER BY seq", (ns_id, low, cached_from)).fetchall()
        rows = self._select(conn, ns_id, cached_from, head + 1, None)
        dedup = conn.execute(
            "SELECT event_id, seq, stored_ns FROM (SELECT * FROM dedup WHERE ns = ? AND "
            "stored_ns >= ? ORDER BY stored_ns DESC LIMIT ?) ORDER BY stored_ns",
            (ns_id, dedup_since, dedup_max)).fetchall()
        return Loaded(ns_id, head, window, rows, dedup)

    # -- reading and writing --------------------------------------------------------------

    def read(self, ns_id: int, start: int, stop: int, limit: int) -> list[EventRow]:
        """Up to *limit* rows with ``start <= seq < stop`` (the reader connection: call
        from one thread at a time)."""
        try:
            return self._select(self._conn(self._reader), ns_id, start, stop, limit)
        except sqlite3.Error as exc:
            raise StorageError("data_dir", f"reading {self.path / DB_NAME}: {exc}") from exc

    @staticmethod
    def _select(conn: sqlite3.Connection, ns_id: int, start: int, stop: int,
                limit: int | None) -> list[EventRow]:
        return conn.execute(
            "SELECT seq, stored_ns, ts_s, ts_ns, size, topic, type_url, labels, payload "
            "FROM events WHERE ns = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
            (ns_id, start, stop, -1 if limit is None else limit)).fetchall()

    def write(self, batch: WriteBatch) -> None:
        """Write *batch* in one transaction (committed as the fsync mode says).

        :raises StorageError: if it failed (nothing of it is stored)
        """
        conn = self._conn(self._writer)
        try:
            with _transaction(conn):
                if batch.events:
                    conn.executemany(
                        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.events)
                if batch.dedup:
                    conn.executemany("INSERT OR REPLACE INTO dedup VALUES (?, ?, ?, ?)",
                                     batch.dedup)
                for ns_id, head in batch.heads.items():
                    conn.execute("UPDATE namespaces SET head = ? WHERE id = ?", (head, ns_id))
                for ns_id, first in batch.deletes.items():
                    conn.execute("DELETE FROM events WHERE ns = ? AND seq < ?", (ns_id, first))
                for ns_id, (horizon, keep) in batch.dedup_expiry.items():
                    conn.execute("DELETE FROM dedup WHERE ns = ? AND stored_ns < ?",
                                 (ns_id, horizon))
                    conn.execute(
                        "DELETE FROM dedup WHERE ns = ? AND stored_ns < (SELECT stored_ns "
                        "FROM dedup WHERE ns = ? ORDER BY stored_ns DESC LIMIT 1 OFFSET ?)",
                        (ns_id, ns_id, keep))
        except sqlite3.Error as exc:
            raise StorageError("data_dir", f"writing {self.path / DB_NAME}: {exc}") from exc

    def _conn(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StorageError("data_dir", f"{self.path / DB_NAME} is closed")
        return conn


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

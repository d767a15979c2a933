"""The ``memory`` engine behind the durable-log interface: history lives in this
process only (lost on restart, one random epoch per store); appends are acknowledged
at once. Client-chosen event ids are deduplicated within a bounded window."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from types import TracebackType

from ._config import Retention
from ._dedup import DedupWindow
from ._durable import DEFAULT_DEDUP_MAX_IDS, DEFAULT_DEDUP_WINDOW, LogListener, NewEvent, Stored
from ._types import Event
from ._view import HistoryView

__all__ = ["MemoryDurableLog", "MemoryStore"]


class MemoryDurableLog:
    """One namespace's history in memory (the whole retention is cached)."""

    def __init__(
        self, namespace: str, epoch: str, retention: Retention, listener: LogListener,
        dedup: DedupWindow,
    ) -> None:
        self._namespace = namespace
        self._epoch = epoch
        self._view = HistoryView(retention)
        self._listener = listener
        self._dedup = dedup

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._view.head

    @property
    def first(self) -> int:
        return self._view.first

    @property
    def retained_bytes(self) -> int:
        return self._view.retained_bytes

    def read(self, start: int, stop: int) -> Sequence[Event]:
        events = self._view.read(start, stop)
        assert events is not None  # everything retained is cached
        return events

    def trim(self, now: float) -> None:
        self._view.trim(now)
        self._dedup.expire(now)

    async def append(self, items: Sequence[NewEvent], now: float,
                     submitted: Callable[[], None] | None = None) -> list[Stored]:
        events, results = assign(self._namespace, self._view.head, items, now, self._dedup)
        if events:
            self._view.add(events)
            self._listener.events_added(self._namespace, events)
        if submitted is not None:
            submitted()
        return results


def assign(
    namespace: str, head: int, items: Sequence[NewEvent], now: float, dedup: DedupWindow
) -> tuple[list[Event], list[Stored]]:
    """Give *items* the sequences after *head*, except those whose id is in *dedup*
    (which get their original sequence); remember the new ids."""
    events: list[Event] = []
    results: list[Stored] = []
    for item in items:
        if item.event_id is not None:
            seq = dedup.get(item.event_id, now)
            if seq is not None:
                results.append(Stored(seq, True))
                continue
        head += 1
        events.append(Event(namespace, item.topic, item.payload, item.type_url, item.labels,
                            item.timestamp_ns, head, now, item.size))
        results.append(Stored(head, False))
        if item.event_id is not None:
            dedup.put(item.event_id, head, now)
    return events, results


class MemoryStore:
    """Opens in-memory logs. One epoch for the whole store (random unless given)."""

    def __init__(
        self,
        epoch: str | None = None,
        *,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
        dedup_max_ids: int = DEFAULT_DEDUP_MAX_IDS,
    ) -> None:
        self.epoch = epoch or uuid.uuid4().hex[:16]
        self._dedup_window = dedup_window
        self._dedup_max_ids = dedup_max_ids
        self._logs: dict[str, MemoryDurableLog] = {}

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._logs.clear()

    async def open_log(
        self, namespace: str, retention: Retention, listener: LogListener
    ) -> MemoryDurableLog:
        log = self._logs.get(namespace)
        if log is None:
            dedup = DedupWindow(self._dedup_window, self._dedup_max_ids)
            log = MemoryDurableLog(namespace, self.epoch, retention, listener, dedup)
            self._logs[namespace] = log
        return log

"""The per-namespace event log: sequence numbers and retention.

The hub talks to a log only through :class:`EventLog`, so a clustered backend can
replace :class:`MemoryLog`. A log is used from one event loop and needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ._config import Retention
from ._types import Event

__all__ = ["EventLog", "LogFactory", "MemoryLog"]

#: Per-event overhead counted in byte bounds, besides payload, topic and labels.
EVENT_OVERHEAD = 64


class EventLog(Protocol):
    """One namespace's retained history."""

    @property
    def head(self) -> int:
        """The newest sequence assigned, 0 before the first publish."""
        ...

    @property
    def first(self) -> int:
        """The oldest retained sequence; ``head + 1`` when nothing is retained."""
        ...

    @property
    def retained_bytes(self) -> int: ...

    def append(
        self,
        topic: str,
        payload: bytes,
        type_url: str,
        labels: Mapping[str, str],
        timestamp_ns: int,
        now: float,
        size: int,
    ) -> Event:
        """Assign the next sequence, store the event, apply retention, return it.

        *size* is :func:`event_size` of the event, computed once by the caller."""
        ...

    def read(self, start: int, stop: int) -> Sequence[Event]:
        """The retained events with ``start <= sequence < stop``, oldest first."""
        ...

    def trim(self, now: float) -> None:
        """Drop events older than the retention's ``max_age``."""
        ...


LogFactory = Callable[[str, Retention], EventLog]


def event_size(topic: str, payload: bytes, type_url: str, labels: Mapping[str, str]) -> int:
    """The bytes an event counts for in byte bounds and retention."""
    size = EVENT_OVERHEAD + len(topic) + len(payload) + len(type_url)
    if labels:
        for key, value in labels.items():
            size += len(key) + len(value)
    return size


class MemoryLog:
    """An in-memory log: a list with a moving start, compacted as it trims."""

    __slots__ = ("_base", "_bytes", "_events", "_head", "_namespace", "_retention", "_start")

    def __init__(self, namespace: str, retention: Retention) -> None:
        self._namespace = namespace
        self._retention = retention
        self._events: list[Event] = []
        self._start = 0  # index of the oldest retained event in _events
        self._base = 1  # sequence of _events[0]
        self._head = 0
        self._bytes = 0

    @property
    def head(self) -> int:
        return self._head

    @property
    def first(self) -> int:
        return self._base + self._start

    @property
    def retained_bytes(self) -> int:
        return self._bytes

    def append(
        self,
        topic: str,
        payload: bytes,
        type_url: str,
        labels: Mapping[str, str],
        timestamp_ns: int,
        now: float,
        size: int,
    ) -> Event:
        self._head += 1
        event = Event(
            self._namespace, topic, payload, type_url, labels, timestamp_ns, self._head, now, size
        )
        self._events.append(event)
        self._bytes += size
        retention = self._retention
        retained = len(self._events) - self._start
        if retained > retention.max_events or self._bytes > retention.max_bytes:
            while (
                len(self._events) - self._start > retention.max_events
                or self._bytes > retention.max_bytes
            ) and self._start < len(self._events):
                self._drop_first()
            self._compact()
        return event

    def read(self, start: int, stop: int) -> Sequence[Event]:
        lo = max(start - self._base, self._start)
        hi = min(stop, self._head + 1) - self._base
        if hi <= lo:
            return ()
        return self._events[lo:hi]

    def trim(self, now: float) -> None:
        horizon = now - self._retention.max_age
        events = self._events
        while self._start < len(events) and events[self._start].published_at < horizon:
            self._drop_first()
        self._compact()

    def _drop_first(self) -> None:
        self._bytes -= self._events[self._start].size
        self._start += 1

    def _compact(self) -> None:
        if self._start > 1024 and self._start * 2 > len(self._events):
            del self._events[: self._start]
            self._base += self._start
            self._start = 0

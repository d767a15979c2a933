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

#: Bytes an event counts for besides its payload, topic, type URL and labels: what the
#: hub holds for it (the Event object, its integers, float and list slot, the payload's
#: bytes header), measured with tracemalloc on CPython 3.11 and rounded up, so that
#: byte bounds (retention, ``max_retained_bytes``) bound memory, not just payloads.
EVENT_OVERHEAD = 256
#: Bytes a non-empty label mapping counts for, besides its labels.
LABELS_OVERHEAD = 160
#: Bytes each label counts for, besides its key and value (two string objects and the
#: mapping's entry).
LABEL_OVERHEAD = 128


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

    def drop_before(self, sequence: int) -> None:
        """Drop every retained event with a sequence below *sequence* (the hub's
        server-wide budget trims the oldest events across namespaces this way)."""
        ...

    def charge(self, event: Event, size: int) -> None:
        """Count *size* more bytes for *event*, which is retained: a copy an edge keeps
        of it (see :meth:`Broadcaster.account_cached`). They leave ``retained_bytes``
        with the event."""
        ...


#: Builds the log of a namespace: ``factory(namespace, retention, head)``. *head* is the
#: sequence numbering continues after: 0 for a namespace never seen, or the head it had
#: when the hub removed it as idle (so that resuming clients are never silently wrong).
LogFactory = Callable[[str, Retention, int], EventLog]


def event_size(topic: str, payload: bytes, type_url: str, labels: Mapping[str, str]) -> int:
    """The bytes an event counts for in byte bounds and retention: its contents plus the
    measured overhead of holding it (an upper bound of the hub's memory for it; an edge
    that keeps a serialized copy adds that copy's size)."""
    size = EVENT_OVERHEAD + len(topic) + len(payload) + len(type_url)
    if labels:
        size += LABELS_OVERHEAD
        for key, value in labels.items():
            size += LABEL_OVERHEAD + len(key) + len(value)
    return size


class MemoryLog:
    """An in-memory log: a list with a moving start, compacted as it trims. A trimmed
    event is released at once (its slot holds None until compaction)."""

    __slots__ = ("_base", "_bytes", "_events", "_head", "_namespace", "_retention", "_start")

    def __init__(self, namespace: str, retention: Retention, head: int = 0) -> None:
        self._namespace = namespace
        self._retention = retention
        self._events: list[Event] = []
        self._start = 0  # index of the oldest retained event in _events
        self._base = head + 1  # sequence of _events[0]
        self._head = head
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

    def charge(self, event: Event, size: int) -> None:
        event.cached_bytes += size
        self._bytes += size

    def drop_before(self, sequence: int) -> None:
        stop = min(sequence - self._base, len(self._events))
        while self._start < stop:
            self._drop_first()
        self._compact()

    def _drop_first(self) -> None:
        events, start = self._events, self._start
        event = events[start]
        self._bytes -= event.size + event.cached_bytes
        # free the event now; only the list's slot waits for compaction
        events[start] = None  # type: ignore[call-overload]
        self._start = start + 1

    def _compact(self) -> None:
        if self._start > 1024 and self._start * 2 > len(self._events):
            del self._events[: self._start]
            self._base += self._start
            self._start = 0

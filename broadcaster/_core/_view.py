"""The local view of a durable log: its retention window and a cache of its newest events.

The window knows every retained sequence's size and publish time (16 bytes per event),
so retention by count, bytes and age is decided here, on the event loop, without
reading the store; the engine then deletes what the window dropped. The cache keeps
the newest events as :class:`Event` objects, bounded separately (``cache_events``,
``cache_bytes``); a read below the cache goes to the engine.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from ._config import Retention
from ._types import Event

__all__ = ["HistoryView"]

_COMPACT_AT = 1024


class HistoryView:
    """Sequences ``first..head`` of one namespace, the newest ones cached in memory."""

    __slots__ = (
        "_bytes", "_cache", "_cache_bytes", "_cache_start", "_first", "_head", "_max_cache",
        "_max_cache_bytes", "_pinned", "_retention", "_sizes", "_times", "_wstart",
    )

    def __init__(
        self,
        retention: Retention,
        cache_events: int | None = None,
        cache_bytes: int | None = None,
        head: int = 0,
    ) -> None:
        """:param cache_events: events cached at most (None: the retention's count)
        :param cache_bytes: bytes cached at most (None: the retention's bytes)
        :param head: the newest sequence already assigned (nothing retained)"""
        self._retention = retention
        self._max_cache = retention.max_events if cache_events is None else cache_events
        self._max_cache_bytes = retention.max_bytes if cache_bytes is None else cache_bytes
        self._head = head
        self._first = head + 1
        self._bytes = 0
        self._sizes = array("q")  # sizes of first.., from index _wstart
        self._times = array("d")  # published_at of the same
        self._wstart = 0
        self._cache: list[Event] = []  # the newest events, from index _cache_start
        self._cache_start = 0
        self._cache_bytes = 0
        self._pinned = 1 << 63  # events from this sequence on stay cached

    # -- the window -----------------------------------------------------------------

    @property
    def head(self) -> int:
        return self._head

    @property
    def first(self) -> int:
        return self._first

    @property
    def retained_bytes(self) -> int:
        return self._bytes

    @property
    def retained(self) -> int:
        return self._head - self._first + 1

    @property
    def cache_first(self) -> int:
        """The oldest cached sequence (``head + 1`` when nothing is cached)."""
        return self._head - (len(self._cache) - self._cache_start) + 1

    def note(self, size: int, published_at: float) -> None:
        """Put the next sequence into the window without caching it (loading history
        that is older than what the cache will hold)."""
        self._head += 1
        self._sizes.append(size)
        self._times.append(published_at)
        self._bytes += size
        self._cache.clear()
        self._cache_start = self._cache_bytes = 0

    def add(self, events: Sequence[Event]) -> None:
        """Append *events* (sequences ``head + 1`` onwards, consecutive), cache them and
        apply retention by count and bytes."""
        if not events:
            return
        if events[0].sequence != self._head + 1:
            raise ValueError(f"event {events[0].sequence} does not follow {self._head}")
        for event in events:
            self._sizes.append(event.size)
            self._times.append(event.published_at)
            self._bytes += event.size
            self._cache_bytes += event.size
        self._head = events[-1].sequence
        self._cache.extend(events)
        self.enforce()

    def enforce(self) -> None:
        """Drop the oldest events while the window exceeds the count or byte bound."""
        retention = self._retention
        excess = self.retained - retention.max_events
        if excess > 0:
            self._drop(excess)
        while self._bytes > retention.max_bytes and self._first <= self._head:
            self._drop(1)
        self._bound_cache()

    def trim(self, now: float) -> bool:
        """Drop events published before ``now - max_age``; True if any was dropped."""
        horizon = now - self._retention.max_age
        times, start, end = self._times, self._wstart, len(self._times)
        if start >= end or times[start] >= horizon:
            return False
        lo, hi = start, end  # published_at only grows: bisect the first one to keep
        while lo < hi:
            mid = (lo + hi) // 2
            if times[mid] < horizon:
                lo = mid + 1
            else:
                hi = mid
        self._drop(lo - start)
        self._bound_cache()
        return True

    def skip_to(self, first: int) -> None:
        """Forget everything below *first* (the engine lost or expired it); sequences
        up to ``first - 1`` count as assigned."""
        if first <= self._first:
            return
        if first > self._head + 1:
            self._drop(self.retained)
            self._head = first - 1
            self._first = first
            return
        self._drop(first - self._first)
        self._bound_cache()

    def _drop(self, count: int) -> None:
        sizes, start = self._sizes, self._wstart
        count = min(count, len(sizes) - start)
        if count <= 0:
            return
        self._bytes -= sum(sizes[start : start + count])
        self._wstart = start + count
        self._first += count
        if self._wstart > _COMPACT_AT and self._wstart * 2 > len(sizes):
            del sizes[: self._wstart]
            del self._times[: self._wstart]
            self._wstart = 0

    # -- the cache --------------------------------------------------------------------

    def pin(self, sequence: int | None) -> None:
        """Keep the events from *sequence* on cached whatever the cache's bounds (events
        that the store cannot read back yet); None unpins."""
        self._pinned = 1 << 63 if sequence is None else sequence
        if sequence is None:
            self._bound_cache()

    def _bound_cache(self) -> None:
        cache, start = self._cache, self._cache_start
        floor, pinned = self._first, self._pinned  # nothing below the window stays cached
        keep_from = max(0, len(cache) - start - self._max_cache) + start
        while start < len(cache):
            seq = cache[start].sequence
            over = start < keep_from or self._cache_bytes > self._max_cache_bytes
            if seq >= floor and (seq >= pinned or not over):
                break
            self._cache_bytes -= cache[start].size
            start += 1
        self._cache_start = start
        if start > _COMPACT_AT and start * 2 > len(cache):
            del cache[:start]
            self._cache_start = 0

    def read(self, start: int, stop: int) -> Sequence[Event] | None:
        """The cached events with ``max(start, first) <= sequence < stop``; None if the
        range starts below the cache but within the window (read it from the store)."""
        start = max(start, self._first)
        stop = min(stop, self._head + 1)
        if stop <= start:
            return ()
        cache_first = self.cache_first
        if start < cache_first:
            return None
        base = self._cache_start - cache_first
        return self._cache[base + start : base + stop]

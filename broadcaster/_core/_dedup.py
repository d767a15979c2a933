"""The deduplication window of the memory and local engines: client-chosen event ids
remembered for ``window`` seconds, at most ``max_ids`` of them per namespace."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEFAULT_DEDUP_MAX_IDS", "DEFAULT_DEDUP_WINDOW", "DedupWindow"]

#: Seconds a client-chosen event id is remembered (JetStream's default as well).
DEFAULT_DEDUP_WINDOW = 120.0
#: Ids remembered per namespace at most by the memory and local engines.
DEFAULT_DEDUP_MAX_IDS = 100_000


class DedupWindow:
    """Event ids and their sequences, oldest first; forgotten after *window* seconds
    (by the hub's monotonic clock) or when more than *max_ids* are remembered."""

    __slots__ = ("_ids", "_max_ids", "_window")

    def __init__(self, window: float, max_ids: int) -> None:
        self._window = window
        self._max_ids = max_ids
        self._ids: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, event_id: str, now: float) -> int | None:
        """The sequence stored with *event_id* within the window, or None."""
        found = self._ids.get(event_id)
        if found is None or found[1] < now - self._window:
            return None
        return found[0]

    def put(self, event_id: str, sequence: int, at: float) -> None:
        """Remember *event_id* as stored at monotonic time *at*."""
        ids = self._ids
        ids[event_id] = (sequence, at)
        ids.move_to_end(event_id)
        while len(ids) > self._max_ids:
            ids.popitem(last=False)

    def forget(self, event_id: str) -> None:
        """Forget *event_id* (its append failed)."""
        self._ids.pop(event_id, None)

    def expire(self, now: float) -> None:
        """Forget the ids older than the window."""
        ids, horizon = self._ids, now - self._window
        while ids:
            key = next(iter(ids))
            if ids[key][1] >= horizon:
                break
            del ids[key]

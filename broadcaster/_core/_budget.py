"""Server-wide bounds shared by every namespace: cursors and retained bytes.

Per-namespace quotas bound one tenant; these bound the sum, so that no combination of
clients (many namespaces each filling its retention, many all-namespace subscriptions
over many namespaces) can take the server's memory. When retained events exceed
``max_retained_bytes``, the oldest events go first *across* namespaces: a heap keyed by
each namespace's oldest retained event finds the next victim in O(log namespaces).
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Protocol

__all__ = ["Budget", "Entry", "Holder"]


class Holder(Protocol):
    """A namespace, as the budget sees it: retained events it can shed, oldest first."""

    #: its place on the budget's heap (None: not on it); set by the budget only
    budget_entry: Entry | None

    def oldest_published_at(self) -> float | None:
        """When its oldest retained event was published (None: it retains none)."""
        ...

    def shed(self, until: float, excess: int) -> tuple[int, int]:
        """Drop its oldest events published at or before *until* until *excess* bytes
        are freed; return the events and bytes dropped."""
        ...


#: A heap entry: (publish time of the namespace's oldest retained event, tie-break, ns).
Entry = tuple[float, int, Holder]


class Budget:
    """Counts cursors and retained bytes over all namespaces, and trims retention.

    :param max_cursors: cursors (one per subscription and namespace) the hub may hold
    :param max_retained_bytes: bytes of retained events the hub may hold
    """

    __slots__ = ("_heap", "_order", "_stale", "cursors", "max_cursors", "max_retained_bytes",
                 "retained_bytes", "trimmed_bytes", "trimmed_events")

    def __init__(self, max_cursors: int, max_retained_bytes: int) -> None:
        self.max_cursors = max_cursors
        self.max_retained_bytes = max_retained_bytes
        self.cursors = 0
        self.retained_bytes = 0
        self.trimmed_events = 0  # events the budget took from retention
        self.trimmed_bytes = 0
        self._heap: list[Entry] = []
        self._stale = 0  # entries of removed namespaces still on the heap
        self._order = count()

    @property
    def over(self) -> bool:
        return self.retained_bytes > self.max_retained_bytes

    def track(self, ns: Holder) -> None:
        """Put *ns*, which holds retained events and is not tracked, on the heap."""
        oldest = ns.oldest_published_at()
        if oldest is not None:
            entry = ns.budget_entry = (oldest, next(self._order), ns)
            heapq.heappush(self._heap, entry)

    def trim(self) -> None:
        """Drop the oldest retained events, whatever their namespace, until the retained
        bytes fit the budget. Readers that lose events they had not read get a
        ``DropNotice(reason="retention")``, as with per-namespace retention."""
        heap = self._heap
        while self.over and heap:
            entry = heapq.heappop(heap)
            ns = entry[2]
            if entry is not ns.budget_entry:
                self._stale -= 1  # its namespace was removed
                continue
            ns.budget_entry = None
            oldest = ns.oldest_published_at()
            if oldest is None:
                continue  # emptied by its own retention; tracked again when it fills
            if oldest > entry[0]:  # its own retention moved it on: a later key
                self.track(ns)
                continue
            # take from this namespace what is older than the next one's oldest
            until = max(oldest, heap[0][0]) if heap else oldest + 1e18
            events, freed = ns.shed(until, self.retained_bytes - self.max_retained_bytes)
            self.trimmed_events += events
            self.trimmed_bytes += freed
            self.track(ns)

    def forget(self, ns: Holder) -> None:
        """*ns* was removed: its heap entry is dropped (lazily, in bulk)."""
        if ns.budget_entry is None:
            return
        ns.budget_entry = None
        self._stale += 1
        heap = self._heap
        if self._stale > 64 and 2 * self._stale > len(heap):
            self._heap = [e for e in heap if e is e[2].budget_entry]
            heapq.heapify(self._heap)
            self._stale = 0

"""Bytes an encoder made from an event, kept exactly as long as the event lives.

An event fanned out to thousands of streams is serialized once: the encoder keeps the
bytes and every stream splices them. The core knows nothing of it: entries are keyed by
the event's identity and dropped once a weak reference reports the event freed (the hub
let it go and no buffer holds it any more), so the cache holds no event alive and needs
no bound of its own. The memory it takes is reported with ``on_cache`` (the server
passes ``Broadcaster.account_cached``), so that retention bounds and
``max_retained_bytes`` count each copy while its event is retained.

Keeping an entry costs about half a microsecond (the weak reference), paid back by the
second stream that sends the event; the server turns the cache off while it has at most
one stream to share with (:attr:`EncodedCache.enabled`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from .. import Event

__all__ = ["ENTRY_OVERHEAD", "EncodedCache"]

#: Bytes one entry costs besides its data: the bytes object's header and padding (~40),
#: the weak reference (80 with the collector's header), the event's id (32) and a slot
#: in each of two dicts (together ~50 to ~100 as the dicts fill and grow); the most
#: measured with tracemalloc (tests/grpc/test_event_cache.py), rounded up.
ENTRY_OVERHEAD = 256


class EncodedCache:
    """Bytes per live event.

    Looking up many events is one C loop (``map`` over their ids). A freed event's weak
    reference only notes it (a C call: no Python code runs while the event is freed);
    every method first drops the entries of the events noted, so an id that a freed
    event leaves to a new one never finds the old bytes.

    :param on_cache: told each event and what caching its bytes costs (their length plus
        :data:`ENTRY_OVERHEAD`)
    :ivar enabled: whether :meth:`put` keeps anything (entries already kept stay)
    """

    __slots__ = ("__weakref__", "_data", "_dead", "_note", "_on_cache", "_refs", "enabled")

    def __init__(self, on_cache: Callable[[Event, int], None] | None = None) -> None:
        self._data: dict[int, bytes] = {}  # id(event) -> bytes
        self._refs: dict[weakref.ref[Event], int] = {}  # the weak references, alive
        self._dead: list[weakref.ref[Event]] = []  # references of freed events
        self._note = self._dead.append  # the references' callback (C: no Python runs)
        self._on_cache = on_cache
        self.enabled = True

    def __len__(self) -> int:
        """Entries (of live events)."""
        if self._dead:
            self._purge()
        return len(self._data)

    def get(self, event: Event) -> bytes | None:
        """The bytes kept for *event*, or None."""
        if self._dead:
            self._purge()
        return self._data.get(id(event))

    def get_many(self, events: Iterable[Event]) -> list[bytes | None]:
        """:meth:`get` of each event, in order (one C loop)."""
        if self._dead:
            self._purge()
        return list(map(self._data.get, map(id, events)))

    def put(self, event: Event, data: bytes) -> None:
        """Keep *data* for *event* while it lives, if :attr:`enabled` (once per event:
        call after :meth:`get` found nothing)."""
        if not self.enabled:
            return
        if self._dead:
            self._purge()
        key = id(event)
        self._refs[weakref.ref(event, self._note)] = key
        self._data[key] = data
        on_cache = self._on_cache
        if on_cache is not None:
            on_cache(event, len(data) + ENTRY_OVERHEAD)

    def _purge(self) -> None:
        """Drop the entries of the events freed since the last call. (An event is noted
        while it is freed, before its memory, and so its id, can be given to another.)"""
        dead, data, refs = self._dead, self._data, self._refs
        while dead:
            data.pop(refs.pop(dead.pop()), None)

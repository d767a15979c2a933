"""The hub's side of a durable log store (``local``, ``jetstream``).

The hub keeps reading every namespace's history through the synchronous
:class:`~._log.EventLog` face that cursors use (:class:`DurableView` over a
:class:`~._durable.DurableLog`), but it publishes with ``await log.append(...)``, and
events enter the history when the engine says so (:meth:`LogBackend.events_added`):
after the commit for ``local``, after JetStream stored them (from any node) for
``jetstream``. :class:`LogBackend` opens the logs and hands what the engines report to
the hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import anyio

from ._config import Retention
from ._durable import DurableLog, LogStore
from ._types import Event

__all__ = ["DurableView", "LogBackend", "LogHost"]


class LogHost(Protocol):
    """The hub, as the backend sees it: what the engine reports goes there."""

    def log_events_added(self, namespace: str, events: Sequence[Event]) -> None: ...

    def log_history_loaded(self, namespace: str) -> None: ...

    def log_history_reset(self, namespace: str, epoch: str) -> None: ...

    def log_availability_changed(self, namespace: str, available: bool, reason: str
                                 ) -> None: ...


class DurableView:
    """A durable log as the hub's :class:`~._log.EventLog`: what cursors read.

    Appending is the hub's durable publish path (``DurableLog.append``), never this
    view's. The server-wide ``max_retained_bytes`` budget does not apply (the events are
    on disk or in JetStream; each engine bounds the events it caches in memory), so
    ``drop_before`` and ``charge`` do nothing.
    """

    __slots__ = ("durable",)

    def __init__(self, durable: DurableLog) -> None:
        self.durable = durable

    @property
    def head(self) -> int:
        return self.durable.head

    @property
    def first(self) -> int:
        return self.durable.first

    @property
    def retained_bytes(self) -> int:
        return self.durable.retained_bytes

    def append(self, topic: str, payload: bytes, type_url: str, labels: Mapping[str, str],
               timestamp_ns: int, now: float, size: int) -> Event:
        raise TypeError("a durable log is appended to with DurableLog.append")

    def read(self, start: int, stop: int) -> Sequence[Event]:
        return self.durable.read(start, stop)

    def trim(self, now: float) -> None:
        self.durable.trim(now)

    def drop_before(self, sequence: int) -> None:
        pass

    def charge(self, event: Event, size: int) -> None:
        pass


class LogBackend:
    """Opens the durable logs of one hub's namespaces (each once; they stay open while
    the store is) and forwards what the engine reports to the hub (a
    :class:`~._durable.LogListener`)."""

    def __init__(self, store: LogStore, hub: LogHost) -> None:
        self.store = store
        self._hub = hub
        self.logs: dict[str, DurableLog] = {}
        #: each open log's head when it was opened (loaded), before anything was appended
        #: through it: where a subscription that waited for the opening starts
        self.opened_heads: dict[str, int] = {}
        #: namespaces whose log reported itself unavailable, and why
        self.unavailable: dict[str, str] = {}
        self._opening: dict[str, anyio.Event] = {}

    async def open(self, name: str, retention: Retention) -> DurableLog:
        """The log of namespace *name*, opened (created in the engine) on first use.

        :raises LogUnavailable: if the engine cannot be reached
        :raises StorageError: if the engine failed
        """
        while True:
            log = self.logs.get(name)
            if log is not None:
                return log
            opening = self._opening.get(name)
            if opening is None:
                break
            await opening.wait()  # another task opens it (or fails to: then try again)
        opening = self._opening[name] = anyio.Event()
        try:
            log = await self.store.open_log(name, retention, self)
            self.opened_heads[name] = log.head
            self.logs[name] = log
            return log
        finally:
            del self._opening[name]
            opening.set()

    # -- LogListener -------------------------------------------------------------------

    def events_added(self, namespace: str, events: Sequence[Event]) -> None:
        self._hub.log_events_added(namespace, events)

    def history_loaded(self, namespace: str) -> None:
        self._hub.log_history_loaded(namespace)

    def history_reset(self, namespace: str, epoch: str) -> None:
        self._hub.log_history_reset(namespace, epoch)

    def availability_changed(self, namespace: str, available: bool, reason: str) -> None:
        if available:
            self.unavailable.pop(namespace, None)
        else:
            self.unavailable[namespace] = reason
        self._hub.log_availability_changed(namespace, available, reason)

"""What the hub sees of a durable or shared log: the engine-independent types.

A :class:`LogStore` (one per hub: one data directory, one NATS connection, or memory)
opens a :class:`DurableLog` per namespace. A durable log has two faces:

* a synchronous **local view** that cursors read on the event loop without awaiting:
  ``head``, ``first``, ``retained_bytes``, ``read(start, stop)`` and ``trim(now)``,
  like :class:`~broadcaster._core._log.EventLog`;
* ``await append(items, now)``, which returns only once the events are stored as the
  engine's durability setting promises, with each item's sequence (the original one
  for an item whose ``event_id`` was already stored within the deduplication window).

Events enter the view in sequence order, with no gaps, whatever their source (this
node's appends, or another node's publishes for a shared log), and every batch that
enters is reported to the :class:`LogListener` the hub gave when it opened the log, on
the event loop, so the hub can wake the subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import NamedTuple, Protocol, Self, runtime_checkable

from ._config import Retention
from ._dedup import DEFAULT_DEDUP_MAX_IDS, DEFAULT_DEDUP_WINDOW
from ._errors import BroadcasterError
from ._types import Event

__all__ = [
    "DEFAULT_DEDUP_MAX_IDS",
    "DEFAULT_DEDUP_WINDOW",
    "DurableLog",
    "FsyncMode",
    "LogListener",
    "LogStore",
    "LogUnavailable",
    "NewEvent",
    "SharedLog",
    "SharedLogStore",
    "StorageError",
    "Stored",
]



class FsyncMode(StrEnum):
    """When the ``local`` engine acknowledges an append (see ``_sqlite_store``)."""

    #: committed and fsynced (SQLite ``synchronous=FULL``) before the acknowledgement
    ALWAYS = "always"
    #: committed (``synchronous=NORMAL``: written to the OS, not fsynced) before it
    BATCH = "batch"
    #: acknowledged at once, committed every ``interval`` seconds
    INTERVAL = "interval"


class LogUnavailable(BroadcasterError):
    """The log cannot store events now (NATS unreachable, no stream leader); the call
    may succeed later. Edges map it to gRPC ``UNAVAILABLE``.

    An append that fails with it may or may not have been stored: publish again with
    the same ``event_id`` to be sure it is stored once."""


class StorageError(BroadcasterError):
    """The storage engine failed (disk full, I/O error, corrupt or foreign database).
    Nothing of the failed append was acknowledged."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append, checked by the hub (valid topic and labels, ``size``
    computed by :func:`~broadcaster._core._log.event_size`).

    :ivar event_id: a client-chosen id; an id stored within the deduplication window
        is not stored again, and its append returns the original sequence
    """

    topic: str
    payload: bytes
    type_url: str
    labels: Mapping[str, str]
    timestamp_ns: int
    size: int
    event_id: str | None = None


class Stored(NamedTuple):
    """The outcome of one appended item."""

    sequence: int
    #: True if the item's ``event_id`` was already stored: nothing new was appended
    duplicate: bool


class LogListener(Protocol):
    """What a durable log tells its hub. Called on the event loop, never re-entrantly
    from inside ``append``'s caller frame for a shared log."""

    def events_added(self, namespace: str, events: Sequence[Event]) -> None:
        """*events* (consecutive sequences, oldest first) entered the local view."""
        ...

    def history_loaded(self, namespace: str) -> None:
        """Older history that ``read`` could not give without waiting has been loaded
        (a shared log fetches it on demand): readers that were waiting may read again."""
        ...

    def history_reset(self, namespace: str, epoch: str) -> None:
        """The log started a new incarnation (*epoch*): sequences and history before it
        are gone (a JetStream stream deleted and created again)."""
        ...

    def availability_changed(self, namespace: str, available: bool, reason: str) -> None:
        """The log became unable (or able again) to store and feed events."""
        ...


class DurableLog(Protocol):
    """One namespace's history in a storage engine."""

    @property
    def namespace(self) -> str: ...

    @property
    def epoch(self) -> str:
        """The incarnation of this history: sequences are only comparable within one."""
        ...

    @property
    def head(self) -> int:
        """The newest sequence in the local view, 0 before the first event."""
        ...

    @property
    def first(self) -> int:
        """The oldest retained sequence; ``head + 1`` when nothing is retained."""
        ...

    @property
    def retained_bytes(self) -> int: ...

    def read(self, start: int, stop: int) -> Sequence[Event]:
        """Retained events from ``max(start, first)`` on, below *stop*, oldest first.

        May return a prefix only (at least one event when any is in the range and
        available without waiting): callers loop until they have what they need."""
        ...

    def trim(self, now: float) -> None:
        """Apply retention by age (``now`` is the hub's monotonic clock)."""
        ...

    async def append(self, items: Sequence[NewEvent], now: float,
                     submitted: Callable[[], None] | None = None) -> list[Stored]:
        """Store *items* in order; return when they are durable per the engine's setting.

        *submitted* (if given) is called once the items' place in the log is fixed,
        before they are durable: appends called one after the other, each once the one
        before was submitted, are stored in that order while their acknowledgements
        overlap (a publisher's pipelined batches).

        :raises LogUnavailable: if the engine cannot store now (retry with the same ids)
        :raises StorageError: if the engine failed; nothing was acknowledged
        """
        ...


class LogStore(Protocol):
    """A storage engine: opens the logs of one hub. Enter it before use."""

    @property
    def epoch(self) -> str:
        """The epoch every log of this store shares (memory, local), or ``""`` when each
        log has its own (jetstream: a stream's incarnation). Known once entered."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def open_log(
        self, namespace: str, retention: Retention, listener: LogListener
    ) -> DurableLog:
        """The log of *namespace*, created on first use with *retention*."""
        ...


@runtime_checkable
class SharedLog(DurableLog, Protocol):
    """A log other nodes append to: this node's view of it may lag behind."""

    async def catch_up(self) -> None:
        """Return once the view holds every event the log held when called (bounded by
        the engine's timeout; at once if the engine cannot be reached)."""
        ...


@runtime_checkable
class SharedLogStore(LogStore, Protocol):
    """A store whose logs other nodes write too (jetstream). A hub opens the log of every
    namespace it learns of, so that its all-namespaces subscriptions get them all."""

    async def namespaces(self) -> list[str]:
        """Every namespace that has a log now.

        :raises LogUnavailable: if the engine cannot be reached
        """
        ...

    async def watch_namespaces(self, callback: Callable[[str], None]) -> None:
        """Call *callback* on the event loop with each namespace whose log is created
        from now on, by any node."""
        ...

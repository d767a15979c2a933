"""What a client subscription yields: events and the notices that keep it honest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["AvailabilityNotice", "DropNotice", "Ended", "Event", "Item", "ResyncNotice"]


@dataclass(slots=True)
class Event:
    """One delivered event (treat it as read-only; not frozen, which is cheaper to build).

    :ivar namespace: the namespace it was published into
    :ivar topic: e.g. ``/tasks/exit``
    :ivar sequence: its position in the namespace's log (the resume cursor)
    :ivar type_url: the payload's type, as published (``containerd.events.TaskExit``)
    :ivar payload: the payload bytes (the ``value`` of the protobuf Any)
    :ivar timestamp_ns: publish time, nanoseconds since the Unix epoch
    :ivar labels: labels given at publish time
    """

    namespace: str
    topic: str
    sequence: int
    type_url: str
    payload: bytes
    timestamp_ns: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def timestamp(self) -> datetime:
        """:attr:`timestamp_ns` as an aware UTC datetime (microsecond precision)."""
        return datetime.fromtimestamp(self.timestamp_ns / 1e9, UTC)


@dataclass(slots=True, frozen=True)
class DropNotice:
    """Events of *namespace* matching the subscription were not delivered.

    It comes after the gap and before the next delivered event of that namespace.

    :ivar count: how many were dropped
    :ivar first_sequence: lowest dropped sequence
    :ivar last_sequence: highest dropped sequence
    :ivar reason: e.g. ``drop_newest``, ``drop_oldest``, ``block_timeout``
    """

    namespace: str
    count: int
    first_sequence: int
    last_sequence: int
    reason: str


@dataclass(slots=True, frozen=True)
class ResyncNotice:
    """A resume cursor could not be honoured (server restarted, or history expired).

    Re-list your state; delivery continues from ``oldest_available`` in ``epoch``.
    """

    namespace: str
    requested_since: int
    oldest_available: int
    reason: str
    epoch: str


@dataclass(slots=True, frozen=True)
class AvailabilityNotice:
    """The server's log of *namespace* became unable to store and feed events (``available``
    False: the jetstream log when NATS is unreachable), or able again (True).

    While it is unavailable the subscription stays open but receives nothing of the
    namespace, and publishing into it fails with ``UNAVAILABLE``; once it is available
    again delivery continues where it stopped, nothing missed.
    """

    namespace: str
    available: bool
    reason: str


@dataclass(slots=True, frozen=True)
class Ended:
    """The server ended the subscription (e.g. evicted as a slow consumer); it is the
    last item the subscription yields."""

    reason: str
    message: str


#: Anything a client subscription yields.
Item = Event | DropNotice | ResyncNotice | AvailabilityNotice | Ended

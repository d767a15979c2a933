"""What a subscription yields: events and the notices that keep a subscriber honest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AvailabilityNotice",
    "DropNotice",
    "DropReason",
    "EndReason",
    "Ended",
    "Event",
    "Heartbeat",
    "Item",
    "ResyncNotice",
    "ResyncReason",
]


class DropReason(StrEnum):
    """Why events were dropped for a subscriber (the ``reason`` label of the drop metric)."""

    #: ``drop_newest``: the subscriber's buffer was full when the event arrived
    OVERFLOW_NEWEST = "drop_newest"
    #: ``drop_oldest``: the event was pushed out of a full buffer by newer ones
    OVERFLOW_OLDEST = "drop_oldest"
    #: ``block``: the publisher waited ``block_timeout`` and the fallback dropped it
    BLOCK_TIMEOUT = "block_timeout"
    #: ``retry``: the buffer stayed full for every retry attempt
    RETRY_EXHAUSTED = "retry_exhausted"
    #: the event left the namespace's retention before the subscriber read it
    RETENTION = "retention"


class EndReason(StrEnum):
    """Why a subscription ended without its owner leaving it."""

    #: ``disconnect`` policy: the subscriber fell behind its bound
    SLOW_CONSUMER = "slow_consumer"
    #: the subscriber neither consumed nor acknowledged for too many heartbeats
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    #: ``liveness="ack"``: events waited for the subscriber, which took none for too
    #: many heartbeats (even if it acknowledged them)
    NOT_CONSUMING = "not_consuming"
    #: an all-namespaces subscription met a new namespace when the hub had its maximum
    #: of cursors (``max_cursors``); the newest such subscriptions are ended
    CURSOR_LIMIT = "cursor_limit"
    #: the subscription's admission predicate no longer admits a namespace it reads
    #: (an access policy was reloaded: :meth:`Broadcaster.readmit`)
    PERMISSION_REVOKED = "permission_revoked"
    #: the hub is shutting down
    HUB_CLOSED = "hub_closed"


class ResyncReason(StrEnum):
    """Why a resumed subscription could not start exactly where it asked."""

    #: ``since`` is older than the oldest retained event (etcd's "compacted")
    COMPACTED = "compacted"
    #: ``since`` belongs to another incarnation of the log (the server restarted)
    EPOCH_CHANGED = "epoch_changed"
    #: ``since`` is ahead of the namespace's newest sequence (treated as a restart)
    AHEAD = "ahead_of_head"


@dataclass(slots=True, eq=False, weakref_slot=True)
class Event:
    """One published event.

    Sequences are per namespace: 1, 2, 3... with no gaps in what was published. Events
    compare and hash by identity, and can be weakly referenced: an edge keeps what it
    derives from an event (its serialized bytes) keyed weakly by it, for as long as the
    event lives, and reports the size with :meth:`Broadcaster.account_cached`.

    :ivar namespace: the namespace it was published in
    :ivar topic: a ``/``-rooted path such as ``/tasks/exit``
    :ivar payload: opaque bytes (for containerd events, the ``value`` of a protobuf Any)
    :ivar type_url: the type of *payload* (the ``type_url`` of a protobuf Any), or ``""``
    :ivar labels: string labels, matched by ``labels.KEY`` filters
    :ivar timestamp_ns: wall-clock publish time, nanoseconds since the Unix epoch
    :ivar sequence: position in the namespace's log
    :ivar published_at: the hub's monotonic clock at publish (for latency figures)
    :ivar size: the bytes this event counts for in byte bounds and retention
    :ivar cached_bytes: bytes of edge caches counted with the event while it is retained
    """

    namespace: str
    topic: str
    payload: bytes
    type_url: str
    labels: Mapping[str, str]
    timestamp_ns: int
    sequence: int
    published_at: float
    size: int
    cached_bytes: int = field(default=0, repr=False)


@dataclass(frozen=True, slots=True)
class DropNotice:
    """Events matching the subscription were dropped; sent before the next event.

    :ivar count: how many events were lost
    :ivar first_sequence: the lowest sequence lost
    :ivar last_sequence: the highest sequence lost (``count`` may be smaller than the
        range when a filter skipped events in between)
    """

    namespace: str
    count: int
    first_sequence: int
    last_sequence: int
    reason: DropReason


@dataclass(frozen=True, slots=True)
class ResyncNotice:
    """A resumed subscription could not start at ``requested_since + 1``.

    The subscriber should re-list its state (as after a Kubernetes "410 Gone"); delivery
    continues from ``oldest_available``.
    """

    namespace: str
    requested_since: int
    oldest_available: int
    reason: ResyncReason
    epoch: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A progress notice: the newest sequence of each of the subscription's namespaces.

    A subscriber with ``liveness="ack"`` must answer it with ``sub.ack(heartbeat_id)``.

    :ivar epoch: the hub's epoch when every namespace shares it (memory and local logs),
        ``""`` when each namespace has its own (jetstream)
    :ivar epochs: the epoch of each of the subscription's namespaces
    """

    heartbeat_id: int
    latest_sequences: Mapping[str, int]
    epoch: str
    epochs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AvailabilityNotice:
    """The namespace's log became unable (or able again) to store and feed events (the
    ``jetstream`` log when NATS is unreachable). While it is unavailable, publishing into
    the namespace fails (``LogUnavailable``) and no new events arrive; the subscription
    stays open and continues where it stopped once it is available again.
    """

    namespace: str
    available: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Ended:
    """The last item of a subscription that was ended by the hub."""

    reason: EndReason
    message: str


#: Anything a subscription yields.
Item = Event | DropNotice | ResyncNotice | AvailabilityNotice | Heartbeat | Ended

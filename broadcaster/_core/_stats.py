"""Frozen statistics records, read by ``statistics()`` and by the metrics collector."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LATENCY_BUCKETS",
    "HubStatistics",
    "LatencyStatistics",
    "NamespaceStatistics",
    "SubscriptionStatistics",
]

#: Upper bounds (seconds) of the publish-to-delivery latency histogram.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True, slots=True)
class LatencyStatistics:
    """A cumulative histogram: ``counts[i]`` deliveries took at most ``LATENCY_BUCKETS[i]``."""

    counts: tuple[int, ...]
    total: int
    sum: float


@dataclass(frozen=True, slots=True)
class NamespaceStatistics:
    """Figures of one namespace since the hub started."""

    name: str
    published: int
    delivered: int
    dropped: Mapping[str, int]
    evicted: Mapping[str, int]
    subscribers: int
    head: int
    oldest: int
    retained_events: int
    retained_bytes: int
    max_lag: int
    latency: LatencyStatistics
    #: the incarnation its sequences belong to
    epoch: str = ""
    #: publishes of an event id already stored (not stored again)
    deduplicated: int = 0
    #: whether its log can store and feed events (False while NATS is unreachable)
    available: bool = True


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """Figures of one subscription."""

    namespaces: tuple[str, ...]
    delivered: int
    dropped: int
    buffered: int
    lag: int
    policy: str


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """Figures of the whole hub."""

    #: the epoch every namespace shares; ``""`` when each has its own (jetstream)
    epoch: str
    subscriptions: int
    namespaces: Mapping[str, NamespaceStatistics]
    callbacks: int
    callback_errors: int
    slow_callbacks: int
    #: heartbeat acks that answered no heartbeat the subscription was given (0, unknown,
    #: future or repeated ids): ignored
    heartbeat_acks_ignored: int = 0
    #: how late the event loop ran the hub's monitor at its latest wake-up, in seconds
    loop_lag: float = 0.0
    #: every lag sample, as a histogram over ``LATENCY_BUCKETS``
    loop_lag_histogram: LatencyStatistics = LatencyStatistics((0,) * len(LATENCY_BUCKETS), 0, 0.0)
    #: seconds the event loop was stalled (not charged to any subscriber's liveness)
    loop_stalled_seconds: float = 0.0
    #: namespaces removed as idle since start
    namespaces_removed: int = 0
    #: cursors held (one per subscription and namespace), and their bound
    cursors: int = 0
    max_cursors: int = 0
    #: bytes of retained events over all namespaces, and their bound
    retained_bytes: int = 0
    max_retained_bytes: int = 0
    #: retained events (and their bytes) the server-wide budget trimmed, oldest first
    budget_trimmed_events: int = 0
    budget_trimmed_bytes: int = 0
    #: subscriptions woken to read after publishes (a keyed subscription only by an
    #: event with one of its keys: see :mod:`._topics`)
    subscription_wakeups: int = 0
    #: seconds spent registering and closing subscriptions over more than 64
    #: namespaces (``cpu_clock``), and seconds such registrations waited for their turn
    #: so that this work stays within ``wide_work_share`` of the loop
    wide_work_seconds: float = 0.0
    wide_work_waited_seconds: float = 0.0

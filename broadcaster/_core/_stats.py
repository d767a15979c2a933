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

    epoch: str
    subscriptions: int
    namespaces: Mapping[str, NamespaceStatistics]
    callbacks: int
    callback_errors: int
    slow_callbacks: int

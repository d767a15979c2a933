"""Prometheus metrics, read from ``hub.statistics()`` at scrape time.

The core owns no metric objects: :class:`HubCollector` turns the frozen statistics
records into metric families when Prometheus scrapes, and is registered into the
registry it is given (never implicitly the global one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

import anyio.lowlevel
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ._core._stats import LATENCY_BUCKETS, HubStatistics, NamespaceStatistics

__all__ = ["HubCollector", "register_metrics"]


class _HasStatistics(Protocol):
    def statistics(self) -> HubStatistics: ...

    async def statistics_sliced(self, slice_seconds: float = ...) -> HubStatistics: ...


class HubCollector(Collector):
    """Exposes a hub's statistics as ``broadcaster_*`` metrics.

    :param hub: anything with ``statistics() -> HubStatistics``
    :param extra: more collectors' families to yield (the server adds its own)
    """

    def __init__(self, hub: _HasStatistics,
                 extra: Callable[[], Iterator[Metric]] | None = None) -> None:
        self._hub = hub
        self._extra = extra

    def describe(self) -> list[Metric]:
        return []  # collected lazily; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        stats = self._hub.statistics()
        families = _NamespaceFamilies()
        for name, ns in stats.namespaces.items():
            families.add(name, ns)
        return self._families(stats, families)

    async def collect_async(self, slice_seconds: float = 0.002) -> list[Metric]:
        """:meth:`collect`, letting other tasks run every *slice_seconds* while the
        hub's cursors are settled and while each namespace's samples are made (1,000
        namespaces are some 70 ms of samples): what a scrape from another thread uses."""
        stats = await self._hub.statistics_sliced(slice_seconds)
        families = _NamespaceFamilies()
        clock = time.perf_counter
        deadline = clock() + slice_seconds
        for name, ns in stats.namespaces.items():
            families.add(name, ns)
            if clock() >= deadline:
                await anyio.lowlevel.checkpoint()
                deadline = clock() + slice_seconds
        return list(self._families(stats, families))

    def _families(self, stats: HubStatistics, families: _NamespaceFamilies
                  ) -> Iterator[Metric]:
        yield from families.all()
        yield from _hub_families(stats)
        if self._extra is not None:
            yield from self._extra()


_NS_LABEL = ["namespace"]


class _NamespaceFamilies:
    """The metric families labelled by namespace, filled one namespace at a time."""

    def __init__(self) -> None:
        self.published = CounterMetricFamily(
            "broadcaster_events_published",
            "Events published, by namespace (with a shared log: every event that entered "
            "this node's view, whichever node published it).", labels=_NS_LABEL)
        self.deduplicated = CounterMetricFamily(
            "broadcaster_events_deduplicated",
            "Publishes of an event id already stored (not stored again), by namespace.",
            labels=_NS_LABEL)
        self.available = GaugeMetricFamily(
            "broadcaster_log_available",
            "1 while the namespace's log can store and feed events, 0 while it cannot "
            "(the jetstream log with NATS unreachable).", labels=_NS_LABEL)
        self.delivered = CounterMetricFamily(
            "broadcaster_events_delivered",
            "Event deliveries to subscribers (one per subscriber), by namespace.",
            labels=_NS_LABEL)
        self.dropped = CounterMetricFamily(
            "broadcaster_events_dropped",
            "Events dropped for a subscriber, by namespace and reason.",
            labels=["namespace", "reason"])
        self.evicted = CounterMetricFamily(
            "broadcaster_subscribers_evicted",
            "Subscribers ended by the hub, by namespace and reason.",
            labels=["namespace", "reason"])
        self.subscribers = GaugeMetricFamily(
            "broadcaster_subscribers", "Subscriptions registered, by namespace.",
            labels=_NS_LABEL)
        self.head = GaugeMetricFamily(
            "broadcaster_namespace_head_sequence", "Newest sequence of the namespace.",
            labels=_NS_LABEL)
        self.retained = GaugeMetricFamily(
            "broadcaster_retained_events", "Events retained for resume.", labels=_NS_LABEL)
        self.retained_bytes = GaugeMetricFamily(
            "broadcaster_retained_bytes", "Bytes retained for resume.", labels=_NS_LABEL)
        self.lag = GaugeMetricFamily(
            "broadcaster_subscriber_max_lag_events",
            "Largest number of events a subscriber of the namespace has yet to receive.",
            labels=_NS_LABEL)
        self.latency = HistogramMetricFamily(
            "broadcaster_delivery_latency_seconds",
            "Publish-to-delivery latency (a batch counts its oldest event's age per event).",
            labels=_NS_LABEL)

    def add(self, name: str, ns: NamespaceStatistics) -> None:
        """Samples of namespace *name*."""
        self.published.add_metric([name], ns.published)
        self.deduplicated.add_metric([name], ns.deduplicated)
        self.available.add_metric([name], 1.0 if ns.available else 0.0)
        self.delivered.add_metric([name], ns.delivered)
        for reason, count in sorted(ns.dropped.items()):
            self.dropped.add_metric([name, reason], count)
        for reason, count in sorted(ns.evicted.items()):
            self.evicted.add_metric([name, reason], count)
        self.subscribers.add_metric([name], ns.subscribers)
        self.head.add_metric([name], ns.head)
        self.retained.add_metric([name], ns.retained_events)
        self.retained_bytes.add_metric([name], ns.retained_bytes)
        self.lag.add_metric([name], ns.max_lag)
        buckets = [(_le(b), c) for b, c in zip(LATENCY_BUCKETS, ns.latency.counts, strict=True)]
        buckets.append(("+Inf", ns.latency.total))
        self.latency.add_metric([name], buckets, ns.latency.sum)

    def all(self) -> Iterator[Metric]:
        yield from (self.published, self.deduplicated, self.available, self.delivered,
                    self.dropped, self.evicted, self.subscribers, self.head, self.retained,
                    self.retained_bytes, self.lag, self.latency)


def _hub_families(stats: HubStatistics) -> Iterator[Metric]:
    """Server-wide figures: subscriptions, callbacks, liveness, the event loop, and the
    shared bounds."""
    yield GaugeMetricFamily(
        "broadcaster_subscriptions", "Subscriptions registered in the hub.",
        value=stats.subscriptions)
    yield GaugeMetricFamily(
        "broadcaster_callbacks", "In-process callbacks registered.", value=stats.callbacks)
    yield CounterMetricFamily(
        "broadcaster_slow_callbacks", "Callback calls that ran past callback_timeout.",
        value=stats.slow_callbacks)
    yield CounterMetricFamily(
        "broadcaster_callback_errors", "Callback calls that raised.",
        value=stats.callback_errors)
    yield CounterMetricFamily(
        "broadcaster_heartbeat_acks_ignored",
        "Heartbeat acks that answered no heartbeat the subscription was given (0, unknown, "
        "future or repeated ids): ignored.", value=stats.heartbeat_acks_ignored)
    lag = HistogramMetricFamily(
        "broadcaster_event_loop_lag_seconds",
        "How late the event loop ran the hub's monitor, sampled every loop_lag_interval.")
    buckets = [(_le(b), c) for b, c in zip(LATENCY_BUCKETS, stats.loop_lag_histogram.counts,
                                           strict=True)]
    buckets.append(("+Inf", stats.loop_lag_histogram.total))
    lag.add_metric([], buckets, stats.loop_lag_histogram.sum)
    yield lag
    yield CounterMetricFamily(
        "broadcaster_event_loop_stalled_seconds",
        "Seconds the event loop was stalled; not charged to any subscriber's liveness.",
        value=stats.loop_stalled_seconds)
    yield GaugeMetricFamily(
        "broadcaster_namespaces", "Namespaces that exist.", value=len(stats.namespaces))
    yield CounterMetricFamily(
        "broadcaster_namespaces_removed",
        "Namespaces removed after namespace_idle_timeout without events, subscribers or "
        "configuration.", value=stats.namespaces_removed)
    yield GaugeMetricFamily(
        "broadcaster_cursors", "Cursors held (one per subscription and namespace).",
        value=stats.cursors)
    yield GaugeMetricFamily(
        "broadcaster_cursors_limit", "The hub's bound on cursors (max_cursors).",
        value=stats.max_cursors)
    yield GaugeMetricFamily(
        "broadcaster_retained_bytes_limit",
        "The hub's bound on retained bytes over all namespaces (max_retained_bytes).",
        value=stats.max_retained_bytes)
    yield CounterMetricFamily(
        "broadcaster_retention_budget_trimmed_events",
        "Retained events dropped, oldest first across namespaces, to keep within "
        "max_retained_bytes.", value=stats.budget_trimmed_events)
    yield CounterMetricFamily(
        "broadcaster_subscription_wakeups",
        "Subscriptions woken to read after publishes (one filtering on topic== and "
        "event.<field>== only by an event with that topic and field value).",
        value=stats.subscription_wakeups)
    yield CounterMetricFamily(
        "broadcaster_wide_work_seconds",
        "Seconds spent registering and closing subscriptions over more than 64 namespaces.",
        value=stats.wide_work_seconds)
    yield CounterMetricFamily(
        "broadcaster_wide_work_waited_seconds",
        "Seconds registrations of subscriptions over more than 64 namespaces waited, so "
        "that such work stays within wide_work_share of the event loop.",
        value=stats.wide_work_waited_seconds)


def _le(bound: float) -> str:
    return repr(float(bound))


def register_metrics(hub: _HasStatistics, registry: CollectorRegistry,
                     extra: Callable[[], Iterator[Metric]] | None = None) -> HubCollector:
    """Register a :class:`HubCollector` for *hub* in *registry* and return it."""
    collector = HubCollector(hub, extra)
    registry.register(collector)
    return collector

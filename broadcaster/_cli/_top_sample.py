"""The figures ``broadcaster top`` shows: one ``Stats`` reading, with rates against the
previous one.

Rates are per second of the *server's* uptime between the two readings, so a slow or
delayed call does not distort them. They are unknown (``None``) for the first reading,
after the server restarted (a new epoch or a smaller uptime) and for a counter that went
backwards; a namespace that appeared since the previous reading counts from 0 (the hub
creates a namespace's counters on its first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..v1 import broadcaster_pb2 as pb

__all__ = ["SORT_KEYS", "NamespaceRow", "Sample", "sorted_rows", "take_sample"]


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    """One namespace: totals since the server started, gauges, and rates per second."""

    namespace: str
    published: int
    delivered: int
    dropped_by_reason: Mapping[str, int]
    evicted_by_reason: Mapping[str, int]
    subscribers: int
    max_lag: int
    head_sequence: int
    oldest_sequence: int
    retained_events: int
    retained_bytes: int
    publish_rate: float | None
    delivery_rate: float | None
    drop_rate: float | None

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())

    @property
    def evicted(self) -> int:
        return sum(self.evicted_by_reason.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "published": self.published,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "dropped_by_reason": dict(sorted(self.dropped_by_reason.items())),
            "evicted": self.evicted,
            "evicted_by_reason": dict(sorted(self.evicted_by_reason.items())),
            "subscribers": self.subscribers,
            "max_lag": self.max_lag,
            "head_sequence": self.head_sequence,
            "oldest_sequence": self.oldest_sequence,
            "retained_events": self.retained_events,
            "retained_bytes": self.retained_bytes,
            "publish_rate": self.publish_rate,
            "delivery_rate": self.delivery_rate,
            "drop_rate": self.drop_rate,
        }


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a server, namespaces sorted by name.

    ``interval_seconds`` is the server time since the previous reading, or None when the
    rates are unknown (first reading, or the server restarted in between).
    """

    epoch: str
    uptime_seconds: float
    interval_seconds: float | None
    subscriptions: int
    streams: int
    namespaces: tuple[NamespaceRow, ...]

    def total(self, field: str) -> int:
        """Sum of an integer field (``published``, ``dropped``...) over the namespaces."""
        return sum(int(getattr(row, field)) for row in self.namespaces)

    def total_rate(self, field: str) -> float | None:
        """Sum of a rate (``publish_rate``...) over the namespaces whose rate is known."""
        if self.interval_seconds is None:
            return None
        rates: list[float | None] = [getattr(row, field) for row in self.namespaces]
        return sum(rate for rate in rates if rate is not None)

    def to_json(self) -> dict[str, Any]:
        """The sample as JSON-ready data (what ``top --json`` prints)."""
        totals: dict[str, Any] = {
            name: self.total(name) for name in ("published", "delivered", "dropped", "evicted")}
        totals.update({name: self.total_rate(name)
                       for name in ("publish_rate", "delivery_rate", "drop_rate")})
        return {
            "epoch": self.epoch,
            "uptime_seconds": self.uptime_seconds,
            "interval_seconds": self.interval_seconds,
            "subscriptions": self.subscriptions,
            "streams": self.streams,
            "totals": totals,
            "namespaces": [row.to_json() for row in self.namespaces],
        }


def _rate(now: int, before: int, interval: float | None) -> float | None:
    if interval is None or now < before:
        return None
    return (now - before) / interval


def _row(ns: pb.NamespaceStats, old: pb.NamespaceStats | None,
         interval: float | None) -> NamespaceRow:
    old = old if old is not None else pb.NamespaceStats(namespace=ns.namespace)
    return NamespaceRow(
        namespace=ns.namespace,
        published=ns.published,
        delivered=ns.delivered,
        dropped_by_reason=dict(ns.dropped),
        evicted_by_reason=dict(ns.evicted),
        subscribers=ns.subscribers,
        max_lag=ns.max_lag,
        head_sequence=ns.head_sequence,
        oldest_sequence=ns.oldest_sequence,
        retained_events=ns.retained_events,
        retained_bytes=ns.retained_bytes,
        publish_rate=_rate(ns.published, old.published, interval),
        delivery_rate=_rate(ns.delivered, old.delivered, interval),
        drop_rate=_rate(sum(ns.dropped.values()), sum(old.dropped.values()), interval),
    )


def take_sample(current: pb.StatsResponse, previous: pb.StatsResponse | None) -> Sample:
    """The sample of *current*, with rates since *previous* (None: no rates)."""
    interval: float | None = None
    if previous is not None and previous.epoch == current.epoch:
        elapsed = current.uptime_seconds - previous.uptime_seconds
        interval = elapsed if elapsed > 0 else None
    before = {} if previous is None else {ns.namespace: ns for ns in previous.namespaces}
    rows = sorted((_row(ns, before.get(ns.namespace), interval) for ns in current.namespaces),
                  key=lambda row: row.namespace)
    return Sample(
        epoch=current.epoch,
        uptime_seconds=current.uptime_seconds,
        interval_seconds=interval,
        subscriptions=current.subscriptions,
        streams=current.streams,
        namespaces=tuple(rows),
    )


def _busiest(*values: Callable[[NamespaceRow], float]) -> Callable[[NamespaceRow], Any]:
    return lambda row: (*(-value(row) for value in values), row.namespace)


#: ``--sort`` choices: busiest first (ties by name), or by name.
SORT_KEYS: Mapping[str, Callable[[NamespaceRow], Any]] = {
    "publish": _busiest(lambda row: row.publish_rate or 0.0),
    "deliver": _busiest(lambda row: row.delivery_rate or 0.0),
    "drops": _busiest(lambda row: row.drop_rate or 0.0, lambda row: row.dropped),
    "subscribers": _busiest(lambda row: row.subscribers),
    "lag": _busiest(lambda row: row.max_lag),
    "name": lambda row: row.namespace,
}


def sorted_rows(sample: Sample, sort: str) -> Sequence[NamespaceRow]:
    """The sample's namespaces in the order of *sort* (a key of :data:`SORT_KEYS`)."""
    return sorted(sample.namespaces, key=SORT_KEYS[sort])

"""Per-namespace state: the log, the cursors reading it, counters and quotas."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from ._config import NamespaceConfig
from ._errors import QuotaExceeded
from ._log import EventLog
from ._policy import PolicyKind
from ._stats import LATENCY_BUCKETS, LatencyStatistics, NamespaceStatistics
from ._types import DropReason, EndReason, Event

if TYPE_CHECKING:
    from ._cursor import Cursor
    from ._subscription import Subscription

__all__ = ["NamespaceState"]


class NamespaceState:
    """Everything the hub keeps for one namespace."""

    def __init__(self, name: str, config: NamespaceConfig, log: EventLog, now: float) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.cursors: set[Cursor] = set()
        self.block_cursors: set[Cursor] = set()
        self.sweep_cursors: set[Cursor] = set()  # disconnect and retry: checked periodically
        self.waiting: set[Subscription] = set()
        self.room: anyio.Event | None = None
        self.published = 0
        self.delivered = 0
        self.dropped: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.tokens = float(config.publish_burst)
        self.tokens_at = now
        self.since_yield = 0

    # -- cursors ---------------------------------------------------------------

    def add(self, cursor: Cursor) -> None:
        self.cursors.add(cursor)
        kind = cursor.policy.kind
        if kind is PolicyKind.BLOCK:
            self.block_cursors.add(cursor)
        if cursor.mode in (PolicyKind.DISCONNECT, PolicyKind.RETRY):
            self.sweep_cursors.add(cursor)

    def remove(self, cursor: Cursor) -> None:
        self.cursors.discard(cursor)
        self.block_cursors.discard(cursor)
        self.sweep_cursors.discard(cursor)
        self.wake_publishers()

    def check_subscription_quota(self) -> None:
        limit = self.config.max_subscriptions
        if len(self.cursors) >= limit:
            raise QuotaExceeded(
                "namespaces", f"namespace {self.name!r} has its maximum of {limit} subscriptions"
            )

    # -- publishing ---------------------------------------------------------------

    def take_token(self, now: float, count: int = 1) -> None:
        """Charge the publish rate quota.

        :raises QuotaExceeded: if the namespace's rate is exhausted
        """
        rate = self.config.max_publish_rate
        if rate is None:
            return
        burst = self.config.publish_burst
        self.tokens = min(burst, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens < count:
            raise QuotaExceeded(
                "namespace", f"namespace {self.name!r} is over its rate of {rate:g} events/s"
            )
        self.tokens -= count

    def notify(self) -> None:
        """Wake the subscriptions waiting for this namespace (once per burst)."""
        if self.waiting:
            for sub in self.waiting:
                sub.wake()
            self.waiting.clear()

    def block_room(self, now: float) -> tuple[int, Cursor | None]:
        """The room of the fullest blocking cursor, and that cursor."""
        room, fullest = 1 << 62, None
        for cursor in self.block_cursors:
            if (r := cursor.room(now)) < room:
                room, fullest = r, cursor
        return room, fullest

    async def wait_for_room(self, seconds: float) -> None:
        """Wait until a blocking subscriber reads, at most *seconds*."""
        if self.room is None:
            self.room = anyio.Event()
        with anyio.move_on_after(seconds):
            await self.room.wait()

    def wake_publishers(self) -> None:
        if self.room is not None:
            self.room.set()
            self.room = None

    # -- counting -----------------------------------------------------------------------

    def count_drop(self, reason: DropReason, count: int) -> None:
        self.dropped[reason.value] += count

    def count_eviction(self, reason: EndReason) -> None:
        self.evicted[reason.value] += 1

    def delivered_chunk(self, chunk: Sequence[Event], now: float, live: bool = True) -> None:
        """Count a delivered chunk; its latency is its oldest event's age, once per event
        (replayed history is counted as delivered but not as latency)."""
        n = len(chunk)
        self.delivered += n
        if not live:
            return
        age = max(0.0, now - chunk[0].published_at)
        self.latency_counts[bisect_left(LATENCY_BUCKETS, age)] += n
        self.latency_sum += age * n
        if self.block_cursors:
            self.wake_publishers()

    def statistics(self, now: float) -> NamespaceStatistics:
        max_lag = 0
        for cursor in self.cursors:
            cursor.settle(now)
            max_lag = max(max_lag, cursor.pending())
        cumulative, running = [], 0
        for count in self.latency_counts[:-1]:
            running += count
            cumulative.append(running)
        total = running + self.latency_counts[-1]
        log = self.log
        return NamespaceStatistics(
            name=self.name,
            published=self.published,
            delivered=self.delivered,
            dropped=dict(self.dropped),
            evicted=dict(self.evicted),
            subscribers=len(self.cursors),
            head=log.head,
            oldest=log.first,
            retained_events=log.head - log.first + 1,
            retained_bytes=log.retained_bytes,
            max_lag=max_lag,
            latency=LatencyStatistics(tuple(cumulative), total, self.latency_sum),
        )

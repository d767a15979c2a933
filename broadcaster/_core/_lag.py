"""The hub's own slowness: how late its event loop runs timers.

A stalled loop (a long synchronous step anywhere in the process, a swapping machine)
delays everyone at once: an ack a client sent on time waits in a socket buffer, a reader
cannot read. The hub measures its loop's lag with a task that wakes every ``interval``
and keeps a short log of the stalls it saw, so that liveness (heartbeats, consumption)
counts only the time the server was responsive: a client is never charged for the
server's own slowness.

A stall is the time from when a timer was due to when the loop ran it: the monitor's
own wake-up, and the heartbeat pass's (which observes before it checks liveness). Each
is measured against its own due time, so a heartbeat pass that comes more often than the
monitor is credited in full, and stalls that overlap are counted once.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable

import anyio

from ._stats import LATENCY_BUCKETS, LatencyStatistics

__all__ = ["LoopMonitor"]

#: Lateness below this is timer noise, not a stall.
STALL_TOLERANCE = 0.001


class LoopMonitor:
    """Measures the event loop's lag and remembers recent stalls.

    :param interval: seconds between the monitor's own wake-ups
    :param horizon: seconds a stall is remembered for :meth:`silence`
    """

    __slots__ = ("_before", "_counts", "_ends", "_horizon", "_starts", "_sum", "interval",
                 "lag", "stalled")

    def __init__(self, interval: float, horizon: float) -> None:
        self.interval = interval
        self._horizon = horizon
        self.lag = 0.0  # lateness of the latest wake-up
        self.stalled = 0.0  # seconds of stall seen since start (overlaps counted once)
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        # stalls, oldest first, disjoint: when each began and ended, and the seconds of
        # stall before it
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._before: list[float] = []

    async def run(self, clock: Callable[[], float]) -> None:
        """Wake every ``interval``; each wake-up's lateness is the loop's lag."""
        while True:
            due = clock() + self.interval
            await anyio.sleep(self.interval)
            now = clock()
            self.measure(max(0.0, now - due))
            self.observe(due, now)

    def measure(self, lag: float) -> None:
        """Record one lag sample."""
        self.lag = lag
        self._counts[bisect_left(LATENCY_BUCKETS, lag)] += 1
        self._sum += lag

    def observe(self, due: float, now: float) -> None:
        """Note that the loop ran, at *now*, a timer due at *due*: from *due* to *now*
        it could not run anything that was due, a stall (merged with the stalls it
        overlaps)."""
        if now - due <= STALL_TOLERANCE:
            return
        starts, ends, before = self._starts, self._ends, self._before
        start, end = due, now
        if ends and ends[-1] >= due:  # overlaps the latest ones: merge them
            first = bisect_left(ends, due)
            start = min(start, starts[first])
            end = max(end, ends[-1])
            self.stalled = before[first]
            del starts[first:], ends[first:], before[first:]
        starts.append(start)
        ends.append(end)
        before.append(self.stalled)
        self.stalled += end - start
        if ends[0] < now - self._horizon:
            drop = bisect_left(ends, now - self._horizon)
            del starts[:drop], ends[:drop], before[:drop]

    def stalled_since(self, since: float) -> float:
        """Seconds of stall after *since* (within the horizon)."""
        ends = self._ends
        if not ends or ends[-1] <= since:
            return 0.0
        first = bisect_right(ends, since)  # the first stall still going on after since
        return self.stalled - self._before[first] - max(0.0, since - self._starts[first])

    def silence(self, since: float, now: float) -> float:
        """Seconds from *since* to *now* during which the loop was not stalled."""
        return now - since - self.stalled_since(since)

    def histogram(self) -> LatencyStatistics:
        """The lag samples as a cumulative histogram over ``LATENCY_BUCKETS``."""
        cumulative, running = [], 0
        for count in self._counts[:-1]:
            running += count
            cumulative.append(running)
        return LatencyStatistics(tuple(cumulative), running + self._counts[-1], self._sum)

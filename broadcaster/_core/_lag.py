"""The hub's own slowness: how late its event loop runs timers.

A stalled loop (a long synchronous step anywhere in the process, a swapping machine)
delays everyone at once: an ack a client sent on time waits in a socket buffer, a reader
cannot read. The hub measures its loop's lag with a task that wakes every ``interval``
and keeps a short log of the stalls it saw, so that liveness (heartbeats, consumption)
counts only the time the server was responsive: a client is never charged for the
server's own slowness.
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
    :param now: the loop clock at start
    """

    __slots__ = ("_before", "_counts", "_ends", "_horizon", "_last", "_sum", "interval",
                 "lag", "stalled")

    def __init__(self, interval: float, horizon: float, now: float) -> None:
        self.interval = interval
        self._horizon = horizon
        self._last = now
        self.lag = 0.0  # lateness of the latest wake-up
        self.stalled = 0.0  # seconds of stall seen since start
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        # stalls, oldest first: when each ended, and the seconds of stall before it
        self._ends: list[float] = []
        self._before: list[float] = []

    async def run(self, clock: Callable[[], float]) -> None:
        """Wake every ``interval``; each wake-up's lateness is the loop's lag."""
        while True:
            due = clock() + self.interval
            await anyio.sleep(self.interval)
            now = clock()
            self.measure(max(0.0, now - due))
            self.observe(now)

    def measure(self, lag: float) -> None:
        """Record one lag sample."""
        self.lag = lag
        self._counts[bisect_left(LATENCY_BUCKETS, lag)] += 1
        self._sum += lag

    def observe(self, now: float) -> None:
        """Note that the loop ran at *now*. A gap since the previous observation longer
        than ``interval`` means the loop could run nothing for the excess: a stall."""
        excess = now - self._last - self.interval
        self._last = now
        if excess <= STALL_TOLERANCE:
            return
        self._ends.append(now)
        self._before.append(self.stalled)
        self.stalled += excess
        if self._ends[0] < now - self._horizon:
            drop = bisect_left(self._ends, now - self._horizon)
            del self._ends[:drop], self._before[:drop]

    def stalled_since(self, since: float) -> float:
        """Seconds of stall that ended after *since* (within the horizon)."""
        ends = self._ends
        if not ends or ends[-1] <= since:
            return 0.0
        return self.stalled - self._before[bisect_right(ends, since)]

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


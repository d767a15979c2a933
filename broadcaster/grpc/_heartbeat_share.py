"""Heartbeat messages of Subscribe streams, within a budget per second for the server.

Every ``heartbeat_interval`` each Subscribe stream gets one Heartbeat message, and its
client answers it: two stream messages per stream and interval, whatever the stream
carries otherwise. A gRPC stream message costs the server about a hundred microseconds of
CPU, so 5,000 streams at a 1 s heartbeat take a whole core for heartbeats alone, and
every other client waits. :class:`HeartbeatShare` keeps the server's Heartbeat messages
near ``per_second``: with more streams than ``per_second * interval``, a stream sends
only every *k*-th heartbeat, *k* = ceil(streams / (per_second * interval)), each stream
on its own turn so that the messages stay spread over the intervals.

Skipping a heartbeat costs no client anything: liveness charges a client only for
heartbeats written to it and not answered (see :meth:`broadcaster.Subscription.
liveness_check`), and consumption counts as before. A dead client is found *k - 1*
intervals later at most. *k* never exceeds ``max_gap / interval``, so that a stream with
nothing else to carry still hears from the server at least every ``max_gap`` seconds
(the Python client's ``idle_timeout`` is 60 s by default).
"""

from __future__ import annotations

import math

__all__ = ["HeartbeatShare"]


class HeartbeatShare:
    """Which heartbeats each Subscribe stream of a server sends.

    :param per_second: Heartbeat messages the server's streams send per second, about
    :param interval: the hub's ``heartbeat_interval`` (seconds)
    :param max_gap: the longest a stream goes without a heartbeat (seconds)
    :raises ValueError: for a per_second below 1 or an interval or max_gap that is not
        positive
    """

    __slots__ = ("_max_stride", "_per_interval", "_slots", "_streams", "stride")

    def __init__(self, per_second: int, interval: float, max_gap: float = 30.0) -> None:
        if per_second < 1:
            raise ValueError(f"per_second: must be at least 1, not {per_second}")
        if not interval > 0 or not max_gap > 0:
            raise ValueError("interval and max_gap: must be positive")
        self._per_interval = max(1.0, per_second * interval)
        self._max_stride = max(1, int(max_gap // interval))
        self._streams = 0
        self._slots = 0
        #: a stream sends every stride-th heartbeat (1: every one)
        self.stride = 1

    @property
    def streams(self) -> int:
        """Streams sharing the budget."""
        return self._streams

    def join(self) -> int:
        """A stream opened: its slot, for :meth:`due`."""
        self._streams += 1
        self._slots += 1
        self._restride()
        return self._slots

    def leave(self) -> None:
        """A stream closed."""
        self._streams -= 1
        self._restride()

    def due(self, slot: int, heartbeat_id: int) -> bool:
        """Whether the stream of *slot* sends the heartbeat *heartbeat_id*."""
        stride = self.stride
        return stride == 1 or (heartbeat_id + slot) % stride == 0

    def _restride(self) -> None:
        self.stride = min(self._max_stride,
                          max(1, math.ceil(self._streams / self._per_interval)))

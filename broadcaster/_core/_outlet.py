"""The client's share of the time: what an edge waited on its remote client for.

A network edge (a Subscribe stream) stands between its subscriptions and a remote
client. A subscription it has not read, or a heartbeat it has not sent yet, may be
waiting on the server (the stream waits for its turn of a busy event loop, reads other
subscriptions, a write's completion reaches a saturated loop late) or on the client (a
write the transport cannot take because the client does not read: HTTP/2 flow control;
a heartbeat sent and not answered). Only the latter is the client's doing. The edge
tells its :class:`Outlet` when it waits on the client; liveness charges a subscription
attached to an outlet with that time only (see :meth:`Subscription.liveness_check`),
so a server too busy to serve a subscriber never evicts it, while a subscriber that
stops reading or answering still is, on time.

Two running totals, in seconds net of the loop's stalls (:class:`LoopMonitor`):

- ``written``: time a write was in flight. ``not_consuming`` counts it.
- ``owed``: time the client owed something: a write in flight, or a heartbeat written
  and not answered yet (counted once when both). ``heartbeat_timeout`` counts it, since
  the subscription's last answer, but never more than the current stretch of owing
  (:meth:`Outlet.owing`): a client that has just owed nothing (every write taken, every
  heartbeat it was written answered) was alive then. A busy stream's client owes
  something for a moment after each write (its completion reaches a saturated loop
  late); when the stream sends only every k-th heartbeat (the heartbeat budget), these
  moments add up over k intervals between two answers, and a healthy client whose
  writes were all taken at once was evicted (issue 9, ``fanout_streams``, 1 run in 13).

Each span is counted less the loop's current lag (``LoopMonitor.lag``): a saturated
loop runs every callback late by about that much, so a write's completion or an ack
reaches the stream that much after the client did its part.
"""

from __future__ import annotations

from collections.abc import Callable

from ._lag import LoopMonitor

__all__ = ["Outlet"]


class Outlet:
    """What one edge stream waited on its client for.

    :param clock: the hub's clock
    :param monitor: the hub's loop monitor (its stalls are the server's time)
    :param newest: the id of the newest heartbeat the hub sent
    """

    __slots__ = ("_cleared", "_clock", "_early", "_heartbeat", "_monitor", "_newest",
                 "_owed", "_owing_since", "_writing_since", "_written")

    def __init__(self, clock: Callable[[], float], monitor: LoopMonitor,
                 newest: Callable[[], int]) -> None:
        self._clock = clock
        self._monitor = monitor
        self._newest = newest
        self._early = 0  # the newest answer to a heartbeat not known written yet
        self._written = 0.0
        self._owed = 0.0
        self._cleared = 0.0  # _owed when the client last owed nothing
        self._writing_since: float | None = None
        self._owing_since: float | None = None
        self._heartbeat = 0  # the newest heartbeat written and not answered (0: none)

    # -- what the edge reports -----------------------------------------------------------

    def write_started(self) -> None:
        """A write to the client began: until :meth:`write_done`, the client owes."""
        now = self._clock()
        self._writing_since = now
        if self._owing_since is None:
            self._owing_since = now

    def write_done(self, heartbeat_id: int = 0) -> None:
        """The write in flight was taken by the transport; *heartbeat_id*: the newest
        heartbeat it (or an earlier write) carried, which the client now owes an
        answer to (0: none)."""
        now, since = self._clock(), self._writing_since
        if since is not None:
            self._writing_since = None
            self._written += self._net(since, now, self._monitor.lag)
        if heartbeat_id > self._heartbeat and heartbeat_id > self._early:
            self._heartbeat = heartbeat_id
        if not self._heartbeat:
            self._settle(now)

    def acked(self, heartbeat_id: int) -> None:
        """The client answered heartbeat *heartbeat_id*: an answer to the heartbeat
        written (or a newer one) ends what the client owes for it. One the hub sent that
        is not known written yet (the client's answer reached the loop before the
        write's completion did) ends it when it is. Any other (older, never sent)
        changes nothing. (Which answers keep a subscription alive is the
        subscription's rule, :meth:`Subscription.ack`: this is only the clock.)"""
        if not 0 < heartbeat_id <= self._newest():
            return
        if heartbeat_id > self._early:
            self._early = heartbeat_id
        if self._heartbeat and heartbeat_id >= self._heartbeat:
            self._heartbeat = 0
            if self._writing_since is None:
                self._settle(self._clock())

    # -- what liveness reads ---------------------------------------------------------------

    def written(self, now: float) -> float:
        """Seconds writes to the client were in flight, net of the server's own delay."""
        since = self._writing_since
        if since is None:
            return self._written
        return self._written + self._net(since, now, self._monitor.lag)

    def owed(self, now: float) -> float:
        """Seconds the client owed a read or an answer, net of the server's own delay."""
        since = self._owing_since
        if since is None:
            return self._owed
        return self._owed + self._net(since, now, self._monitor.lag)

    def owing(self, now: float) -> float:
        """Seconds the client has owed a read or an answer without a break, net of the
        server's own delay (0 if it owes nothing now): the part of :meth:`owed` since
        the client last owed nothing."""
        return self.owed(now) - self._cleared

    def _settle(self, now: float) -> None:
        since = self._owing_since
        if since is not None:
            self._owing_since = None
            self._owed += self._net(since, now, self._monitor.lag)
        self._cleared = self._owed

    def _net(self, since: float, now: float, slack: float) -> float:
        """Seconds from *since* to *now* the loop was not stalled, less *slack*."""
        return max(0.0, self._monitor.silence(since, now) - slack)

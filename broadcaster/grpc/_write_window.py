"""Writes in flight in gRPC core, shared fairly between the client connections.

A grpc.aio write hands a message to gRPC core and completes when core has taken it;
every completion comes back through one queue, in order, to the event loop. When one
event fans out to thousands of streams, or a heartbeat wakes them all, thousands of
writes are in that queue at once and a Health check or another client's Publish, whose
own completion arrives behind them, waits for all of them (seconds on a small machine).
:class:`WriteWindow` keeps at most ``size`` *fresh* writes in flight: a stream waits for
room before it writes, so the queue ahead of any other RPC stays short.

Room is given round-robin between client connections (the peer address), first come
first served within one: a client with thousands of streams waits for its own writes,
not in front of everyone else's. A write in flight longer than ``stale_after`` seconds
stops counting (a client that does not read blocks its own write until it does, and
must not hold the room of the others): the window bounds the writes core is working
on, not the clients that are slow.

The wait for room is the server's time: a stream starts charging its client for a write
(:class:`broadcaster.Outlet`) only once the write has begun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .. import Outlet
from ._round_robin import RoundRobin

__all__ = ["WriteWindow", "write_in_window"]


async def write_in_window(window: WriteWindow | None, peer: str,
                          write: Callable[[bytes], Awaitable[None]], data: bytes,
                          outlet: Outlet | None) -> None:
    """Write *data* once *window* has room for a write of connection *peer* (at once
    without a window), releasing the room when the write is over; *outlet* is told when
    the write begins (the client is charged from then on, not for the wait)."""
    if window is None:
        if outlet is not None:
            outlet.write_started()
        await write(data)
        return
    ticket = await window.begin(peer)
    if outlet is not None:
        outlet.write_started()
    try:
        await write(data)
    finally:
        window.end(ticket)


class WriteWindow:
    """At most *size* writes begun less than *stale_after* seconds ago are in flight.

    :param size: fresh writes in flight at once (asyncio only)
    :param stale_after: seconds after which a write in flight no longer counts
    :raises ValueError: for a size below 1 or a stale_after that is not positive
    """

    __slots__ = ("_fresh", "_size", "_stale_after", "_ticket", "_timer", "_waiters")

    def __init__(self, size: int, stale_after: float = 0.05) -> None:
        if size < 1:
            raise ValueError(f"size: must be at least 1, not {size}")
        if not stale_after > 0:
            raise ValueError(f"stale_after: must be positive, not {stale_after}")
        self._size = size
        self._stale_after = stale_after
        self._fresh: dict[int, float] = {}  # ticket -> loop time begun, oldest first
        self._ticket = 0
        self._waiters: RoundRobin[asyncio.Future[int]] = RoundRobin()  # by peer
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        """Fresh writes in flight now."""
        return len(self._fresh)

    @property
    def waiting(self) -> int:
        """Writes waiting for room."""
        return len(self._waiters)

    async def begin(self, peer: str) -> int:
        """Wait for room for one write of a stream of connection *peer*; the write's
        ticket, for :meth:`end`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._expire(now)
        if self._waiters or len(self._fresh) >= self._size:
            waiter = loop.create_future()
            self._waiters.push(peer, waiter)
            if len(self._fresh) < self._size:  # room, and others waited for it first
                self._wake(loop)
            else:
                self._arm(loop)
            try:
                ticket: int = await waiter  # room was made for this write
                return ticket
            except BaseException:
                if not waiter.done():
                    waiter.cancel()
                if waiter.cancelled():
                    self._waiters.remove(peer, waiter)
                else:  # room was given, but the write will not happen: pass it on
                    self.end(waiter.result())
                raise
        return self._admit(now)

    def end(self, ticket: int) -> None:
        """The write of *ticket* completed (or failed): its room goes to the next."""
        if self._fresh.pop(ticket, None) is not None and self._waiters:
            self._wake(asyncio.get_running_loop())

    # -- internals ----------------------------------------------------------------------

    def _admit(self, now: float) -> int:
        self._ticket += 1
        self._fresh[self._ticket] = now
        return self._ticket

    def _expire(self, now: float) -> None:
        fresh, begun_before = self._fresh, now - self._stale_after
        while fresh:
            ticket = next(iter(fresh))
            if fresh[ticket] > begun_before:
                break
            del fresh[ticket]

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the room there is to the waiters, one per peer in turn."""
        now = loop.time()
        self._expire(now)
        waiters = self._waiters
        while waiters and len(self._fresh) < self._size:
            waiter = waiters.pop()
            if not waiter.done():  # (a cancelled waiter's room goes on)
                waiter.set_result(self._admit(now))
        if waiters:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the waiters when the oldest fresh write goes stale (if nothing completes
        before)."""
        if self._timer is None and self._fresh:
            oldest = self._fresh[next(iter(self._fresh))]
            self._timer = loop.call_at(oldest + self._stale_after, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._wake(loop)

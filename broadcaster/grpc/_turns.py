"""Turns of the event loop shared between many Subscribe streams.

asyncio runs every ready callback once per turn of its loop, in arrival order. When one
event fans out to thousands of streams, thousands of stream tasks are ready at once and
one turn of the loop takes as long as all their work together (a gRPC write costs tens
to hundreds of microseconds); every other RPC, Health included, advances one step per
turn, so it waits seconds. :class:`Turns` lets at most ``per_turn`` streams read or
write in one turn; the others wait for the following turns. Other RPCs then advance
every few milliseconds, and the fan-out as a whole costs the same work (a stream
waiting holds nothing: a slow client's blocked write does not delay the others).

The room of each turn goes round-robin between client connections (a stream's key, its
peer), first come first served within one, as the write window's room does: a client
whose thousands of streams were all woken by one event waits for its own streams, and
another client's stream, woken behind them, goes within a few turns, not after all of
them.
"""

from __future__ import annotations

import asyncio

from ._round_robin import RoundRobin

__all__ = ["Turns"]


class Turns:
    """At most *per_turn* calls of :meth:`take` return in one turn of the event loop,
    round-robin between their keys.

    :param per_turn: streams that may go ahead in one turn (asyncio only)
    """

    __slots__ = ("_left", "_per_turn", "_scheduled", "_waiters")

    def __init__(self, per_turn: int) -> None:
        if per_turn < 1:
            raise ValueError("per_turn: must be at least 1")
        self._per_turn = per_turn
        self._left = per_turn
        self._waiters: RoundRobin[asyncio.Future[None]] = RoundRobin()  # by key
        self._scheduled = False

    @property
    def waiting(self) -> int:
        """Streams waiting for a later turn."""
        return len(self._waiters)

    async def take(self, key: str = "") -> None:
        """Return at once if this turn has room and nobody waits, else in a later turn:
        the keys with waiters go in turn, and the waiters of one key first come, first
        served. Costs one callback per turn of the loop when nobody waits.

        :param key: the client connection the stream belongs to (its peer)
        """
        if self._left and not self._waiters:
            self._left -= 1
            self._schedule()
            return
        # a bare future: an anyio.Event costs several times as much, and at a fan-out to
        # thousands of streams most of them wait here
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.push(key, waiter)
        self._schedule()
        await waiter

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """Runs once in the next turn: that turn's room goes to the waiters, one key
        after another (they resume in the turn after, having been woken now); the others
        wait."""
        self._scheduled = False
        self._left = self._per_turn
        waiters = self._waiters
        while waiters and self._left:
            waiter = waiters.pop()
            if not waiter.done():  # (cancelled while it waited: its room goes on)
                waiter.set_result(None)
                self._left -= 1
        if waiters or self._left < self._per_turn:
            self._schedule()

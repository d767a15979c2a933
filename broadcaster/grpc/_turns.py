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
from collections import deque

__all__ = ["Turns"]


class Turns:
    """At most *per_turn* calls of :meth:`take` return in one turn of the event loop,
    round-robin between their keys.

    :param per_turn: streams that may go ahead in one turn (asyncio only)
    """

    __slots__ = ("_keys", "_left", "_per_turn", "_queues", "_scheduled", "_waiting")

    def __init__(self, per_turn: int) -> None:
        if per_turn < 1:
            raise ValueError("per_turn: must be at least 1")
        self._per_turn = per_turn
        self._left = per_turn
        # the waiters of each key in arrival order, and the keys with waiters in turn
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._keys: deque[str] = deque()
        self._waiting = 0
        self._scheduled = False

    @property
    def waiting(self) -> int:
        """Streams waiting for a later turn."""
        return self._waiting

    async def take(self, key: str = "") -> None:
        """Return at once if this turn has room and nobody waits, else in a later turn:
        the keys with waiters go in turn, and the waiters of one key first come, first
        served. Costs one callback per turn of the loop when nobody waits.

        :param key: the client connection the stream belongs to (its peer)
        """
        if self._left and not self._waiting:
            self._left -= 1
            self._schedule()
            return
        # a bare future: an anyio.Event costs several times as much, and at a fan-out to
        # thousands of streams most of them wait here
        waiter = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._keys.append(key)
        queue.append(waiter)
        self._waiting += 1
        self._schedule()
        await waiter

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """Runs once in the next turn: that turn's room goes to the first waiter of each
        key in turn (they resume in the turn after, having been woken now); the others
        wait."""
        self._scheduled = False
        self._left = self._per_turn
        queues, keys = self._queues, self._keys
        while keys and self._left:
            key = keys.popleft()
            queue = queues[key]
            while queue:
                waiter = queue.popleft()
                self._waiting -= 1
                if not waiter.done():  # (cancelled while it waited: its room goes on)
                    waiter.set_result(None)
                    self._left -= 1
                    break
            if queue:
                keys.append(key)  # its next waiter after the other keys' first
            else:
                del queues[key]
        if self._waiting or self._left < self._per_turn:
            self._schedule()

"""Serving many subscriptions from one task.

An edge adapter that multiplexes subscriptions over one connection (a gRPC
Subscribe stream carries up to a thousand) could run a task per subscription,
each blocked in :meth:`Subscription.receive_batch`. Every publish then wakes
every one of those tasks: a task switch and an event object per subscription per
burst, which is most of a busy server's CPU. A :class:`ReadyQueue` parks the
subscriptions without tasks; whatever would have woken a subscription's task
(new events, a heartbeat, a notice, eviction, close) puts its key on the queue,
and the one serving task reads only those subscriptions.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio

from ._subscription import Subscription

__all__ = ["ReadyQueue"]

K = TypeVar("K")


class ReadyQueue(Generic[K]):
    """Subscriptions, each known by a key, that may have items ready.

    The serving task loops::

        await queue.wait()
        for key, sub in queue.take():
            try:
                items = sub.receive_batch_nowait(limit)
            except anyio.WouldBlock:
                queue.watch(key, sub)       # parked until the hub wakes it
                continue
            ...                             # then watch() again, or mark() if the
                                            # limit was reached and more may be ready
    """

    def __init__(self) -> None:
        self._ready: dict[K, Subscription] = {}
        self._event: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._ready)

    def mark(self, key: K, sub: Subscription) -> None:
        """Put *key* on the queue now (a new subscription, or one to read again)."""
        self._ready[key] = sub
        if self._event is not None:
            self._event.set()
            self._event = None

    def watch(self, key: K, sub: Subscription) -> None:
        """Park *sub*: *key* is queued when the hub next wakes it.

        :raises anyio.BusyResourceError: if a task or another queue waits on *sub*
        """
        sub.park_waker(_Waker(self, key, sub))

    def take(self) -> list[tuple[K, Subscription]]:
        """The queued keys with their subscriptions, oldest first; the queue is empty
        after. Each subscription is unparked from every namespace it waited on."""
        ready = list(self._ready.items())
        self._ready.clear()
        for _, sub in ready:
            sub.unpark()
        return ready

    async def wait(self) -> None:
        """Return once a key is queued (at once if one is)."""
        if not self._ready:
            event = self._event = anyio.Event()
            await event.wait()


class _Waker(Generic[K]):
    """Stands in for a waiting task's event in :attr:`Subscription._wake`."""

    __slots__ = ("key", "queue", "sub")

    def __init__(self, queue: ReadyQueue[K], key: K, sub: Subscription) -> None:
        self.queue, self.key, self.sub = queue, key, sub

    def set(self) -> None:
        self.queue.mark(self.key, self.sub)

"""Waiters queued per client connection, served one connection after another.

The write window and the turns of the event loop both give their room this way: first
come, first served within one connection (its peer), and round-robin between
connections, so that a client with thousands of streams waits for its own and not in
front of everyone else's.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["RoundRobin"]

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Items queued per key; :meth:`pop` takes the first of the key whose turn it is."""

    __slots__ = ("_count", "_queues", "_turn")

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}  # items per key, in arrival order
        self._turn: deque[str] = deque()  # keys with items, in round-robin order
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, key: str, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turn.append(key)
        queue.append(item)
        self._count += 1

    def pop(self) -> T:
        """The first item of the key whose turn it is; that key's next turn comes after
        every other key's.

        :raises IndexError: if nothing is queued
        """
        key = self._turn.popleft()
        queue = self._queues[key]
        item = queue.popleft()
        if queue:
            self._turn.append(key)
        else:
            del self._queues[key]
        self._count -= 1
        return item

    def remove(self, key: str, item: T) -> None:
        """Take *item* out of *key*'s queue, if it is there."""
        queue = self._queues.get(key)
        if queue is None:
            return
        try:
            queue.remove(item)
        except ValueError:
            return
        self._count -= 1
        if not queue:
            del self._queues[key]
            self._turn.remove(key)

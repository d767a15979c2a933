"""A small bounded FIFO between the stream reader and one subscription's consumer."""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

__all__ = ["Mailbox"]

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Bounded to *size* entries. :meth:`put` waits for room (back-pressure onto the
    stream) unless the mailbox is closed, in which case the entry is discarded; after
    :meth:`close`, :meth:`get` drains what is left and then returns None."""

    __slots__ = ("_closed", "_items", "_readable", "_size", "_writable")

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.deque[T] = collections.deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> None:
        while len(self._items) >= self._size and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Append even beyond the bound (for final items such as an error)."""
        if self._closed:
            return
        self._items.append(item)
        self._readable.set()

    async def get(self) -> T | None:
        while not self._items:
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self._size:
            self._writable.set()
        return item

    def close(self) -> None:
        self._closed = True
        self._readable.set()
        self._writable.set()

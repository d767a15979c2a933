"""The consumer's side of one subscription: start it, iterate it, close it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import anyio

from .._core._policy import Policy
from ._errors import ClientError, ClientTimeoutError
from ._subscribe import SubscribeStream, SubscriptionState
from ._types import Item

__all__ = ["Subscription"]


class Subscription:
    """One subscription on a Subscribe stream: the client's shared one, or its own.

    Use ``async with client.subscribe(...) as sub: async for item in sub: ...``. Items
    are :class:`Event`, :class:`DropNotice`, :class:`ResyncNotice` and, last,
    :class:`Ended`; :meth:`batches` yields them as lists instead (cheaper per event).
    Iteration ends after :class:`Ended` or when the subscription or client is closed.
    Neither holds a task group or cancel scope across a ``yield``: leaving an ``async
    for`` early is safe, and the subscription may be read from any task.

    :attr:`cursors` (last sequence seen per namespace) and :attr:`epochs` (the epoch of
    each) are what a restarted consumer passes back as ``since`` and ``epoch`` to resume.
    """

    def __init__(
        self,
        stream: SubscribeStream,
        namespaces: Sequence[str],
        filters: Sequence[str],
        policy: Policy | None,
        since: Mapping[str, int],
        epoch: str | Mapping[str, str] | None,
        timeout: float,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._stream = stream
        self._on_close = on_close  # closes a stream of its own
        self._args = (namespaces, filters, policy, since, epoch)
        self._timeout = timeout
        self._state: SubscriptionState | None = None
        self._current: list[Item] = []
        self._index = 0

    @property
    def id(self) -> str:
        """The subscription id on the stream (``""`` before it starts)."""
        return "" if self._state is None else self._state.sub_id

    @property
    def cursors(self) -> dict[str, int]:
        """Last sequence received per namespace (a copy)."""
        if self._state is None:
            return dict(self._args[3])
        return dict(self._state.cursors)

    @property
    def epoch(self) -> str | None:
        """The epoch every one of the :attr:`cursors` belongs to, once known (None when
        they have epochs of their own: the jetstream log; see :attr:`epochs`)."""
        if self._state is None:
            epoch = self._args[4]
            return epoch if isinstance(epoch, str) else None
        return self._state.epoch

    @property
    def epochs(self) -> dict[str, str]:
        """The epoch of each of the :attr:`cursors` (a copy), once known: what a
        restarted consumer passes back as ``epoch=`` with ``since=cursors``."""
        if self._state is None:
            epoch = self._args[4]
            if isinstance(epoch, Mapping):
                return dict(epoch)
            return dict.fromkeys(self._args[3], epoch) if epoch is not None else {}
        state = self._state
        out = {ns: state.epoch_default for ns in state.cursors
               if ns not in state.epochs and state.epoch_default is not None}
        out.update(state.epochs)
        return out

    async def start(self) -> None:
        """Send the Add and wait (at most the subscribe *timeout*) until it is accepted.

        :raises SubscribeError: naming the field when the server rejects the Add
        :raises ClientTimeoutError: if the server did not answer in time (chained to the
            stream's last connection error, if any)
        :raises ClientClosedError: if the client is closed
        """
        if self._state is not None:
            return
        self._state = state = self._stream.open(*self._args)
        try:
            with anyio.move_on_after(self._timeout):
                await state.answered.wait()
            if not state.answered.is_set():
                error = self._stream.last_error
                raise ClientTimeoutError(
                    f"subscribe: not accepted within {self._timeout:g}s"
                    + (f" (last error: {error})" if error else "")
                ) from error
            if not state.accepted and isinstance(state.final, ClientError):
                raise state.final
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise

    async def aclose(self) -> None:
        """Remove the subscription; iteration ends (and its own stream, if it has one,
        is closed)."""
        if self._state is not None:
            self._stream.close_subscription(self._state)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            with anyio.CancelScope(shield=True):  # bounded: the stream's task just ends
                await on_close()

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if self._index >= len(self._current):
            batch = await self._next_batch()
            if batch is None:
                raise StopAsyncIteration
            self._current, self._index = batch, 0
        item = self._current[self._index]
        self._index += 1
        return item

    async def batches(self) -> AsyncIterator[list[Item]]:
        """Yield items in lists as they arrive (one list per stream message)."""
        if self._index < len(self._current):
            rest = self._current[self._index:]
            self._current, self._index = [], 0
            yield rest
        while (batch := await self._next_batch()) is not None:
            yield batch

    async def _next_batch(self) -> list[Item] | None:
        if self._state is None:
            await self.start()
        state = self._state
        assert state is not None
        try:
            return await state.receive.receive()
        except anyio.ClosedResourceError:
            return None  # closed by aclose(), or its end was already given
        except anyio.EndOfStream:
            pass
        # ended by the stream: what is buffered has been read; now its last word
        self._stream.close_subscription(state)
        final, state.final = state.final, None
        if isinstance(final, ClientError):
            raise final
        return None if final is None else [final]

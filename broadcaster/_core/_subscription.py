"""Subscriptions: what a subscriber holds, bound to the scope that opened it."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol

import anyio

from ._cursor import Cursor
from ._filters import Matcher
from ._policy import Policy
from ._stats import SubscriptionStatistics
from ._types import Ended, EndReason, Heartbeat, Item

if TYPE_CHECKING:
    from ._hub import Broadcaster
    from ._namespace import NamespaceState

__all__ = ["Liveness", "Subscription"]


class _Wakeable(Protocol):
    def set(self) -> None: ...


#: What proves a subscriber alive: reading (``"consume"``) or only :meth:`Subscription.ack`.
Liveness = Literal["consume", "ack"]


class Subscription:
    """A registered subscriber. Get one from :meth:`Broadcaster.subscribe`; use it as an
    async context manager, then iterate it (item by item) or call :meth:`batches`.

    Leaving the ``async with`` (normally, by an exception, or because the enclosing
    cancel scope was cancelled) unregisters it at once. When the hub ends it (eviction,
    hub closing) the last item is an :class:`Ended` and iteration stops.

    :ivar cursors: its position in each namespace it reads (empty once closed)
    """

    def __init__(
        self,
        hub: Broadcaster,
        namespaces: tuple[str, ...] | None,
        matcher: Matcher | None,
        policy: Policy | None,
        since: int | Mapping[str, int] | None,
        since_default: int | None,
        epoch: str | None,
        liveness: Liveness,
        topics: frozenset[str] | None = None,
    ) -> None:
        self._hub = hub
        self.namespaces = namespaces
        self.matcher = matcher
        self.topics = topics  # the only topics *matcher* can accept (None: any)
        self.policy = policy
        self._since = since
        self._since_default = since_default
        self._epoch = epoch
        self.liveness = liveness
        self.cursors: dict[str, Cursor] = {}
        self._order: list[Cursor] = []
        self._rr = 0
        self._wake: _Wakeable | None = None  # the waiting task's event, or a ReadyQueue's
        self._registered = False
        self._closed = False
        self._ended: Ended | None = None
        self._end_sent = False
        self._pending: deque[Item] = deque()
        self.heartbeat_seen = hub.heartbeat_id
        self.alive_at = 0.0
        self.delivered = 0
        self.dropped = 0

    # -- registration (called by the hub) ------------------------------------------

    @property
    def hub_epoch(self) -> str:
        return self._hub.epoch

    def attach(self, ns: NamespaceState, clamp: bool = False) -> Cursor:
        """Add a cursor for *ns*, positioned by this subscription's ``since``.

        :param clamp: cut the policy's bounds down to the namespace's limits instead of
            raising (for all-namespaces subscriptions meeting a new namespace)
        """
        policy = self.policy or ns.config.default_policy
        if clamp:
            policy = ns.config.clamp_policy(policy)
        ns.log.trim(self.now())  # age retention is exact where it is observable
        cursor = Cursor(self, ns, ns.config.check_policy(policy))
        since = self._since
        if isinstance(since, Mapping):
            since = since.get(ns.name, self._since_default)
        cursor.start(since, self._epoch)
        self.cursors[ns.name] = cursor
        self._order.append(cursor)
        ns.add(cursor)
        return cursor

    def start_positions(self) -> dict[str, int]:
        """Per namespace, the sequence after which this subscription started delivering
        (what a client must resume from if it has received nothing yet)."""
        return {name: cursor.start_after for name, cursor in self.cursors.items()}

    def detach_all(self) -> None:
        """Leave every namespace; the cursors stay so that buffered items can drain."""
        for cursor in self._order:
            cursor.ns.remove(cursor)
            cursor.ns.unpark(self)

    def now(self) -> float:
        return self._hub.now()

    def random(self) -> float:
        return self._hub.random()

    def wake(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def end(self, reason: EndReason, message: str) -> None:
        """End the subscription from the hub's side (eviction, hub closing)."""
        if self._ended is not None or self._closed:
            return
        self._ended = Ended(reason, message)
        if reason is not EndReason.HUB_CLOSED:
            for cursor in self._order:
                cursor.buf.clear()
                cursor.overflow.clear()
                cursor.ns.count_eviction(reason)
        self._hub.unregister(self)
        self.wake()

    def evict_slow(self, namespace: str, pending: int) -> None:
        self.end(
            EndReason.SLOW_CONSUMER,
            f"namespace {namespace!r}: {pending} events pending exceed the disconnect bound",
        )

    @property
    def end_reason(self) -> Ended | None:
        """Why the hub ended this subscription, or None."""
        return self._ended

    @property
    def waiting(self) -> bool:
        return self._wake is not None

    # -- context manager ----------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        self.open()
        return self

    def open(self) -> None:
        """Register with the hub (what ``async with`` does on entry)."""
        if self._registered or self._closed:
            raise RuntimeError("a subscription can be entered only once")
        self._hub.register(self)
        self._registered = True
        self.alive_at = self.now()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unregister now; a task blocked in :meth:`receive_batch` gets ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        if self._ended is None:
            self._hub.unregister(self)
        self.wake()
        # Cursors point back at their subscription: drop them, so that reference counting
        # frees both at once rather than the cyclic collector, eventually.
        self.cursors = {}
        self._order = []

    # -- liveness ------------------------------------------------------------------------

    def ack(self, heartbeat_id: int | None = None) -> None:
        """Acknowledge heartbeats: proves the subscriber alive (required with
        ``liveness="ack"``)."""
        self.alive_at = self.now()

    def is_alive(self, now: float, limit: float) -> bool:
        if self.liveness == "consume" and self._wake is not None:
            return True  # blocked waiting for events: it is consuming
        return now - self.alive_at <= limit

    # -- receiving ----------------------------------------------------------------------

    async def receive_batch(self, max_events: int = 1024) -> list[Item]:
        """Wait for and return the next items: notices, up to *max_events* events and a
        heartbeat if one is due.

        :raises anyio.ClosedResourceError: if the subscription was closed
        :raises anyio.EndOfStream: after the :class:`Ended` item was returned
        :raises anyio.BusyResourceError: if another task is already receiving
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                return self.receive_batch_nowait(max_events)
            except anyio.WouldBlock:
                await self._wait()

    def receive_batch_nowait(self, max_events: int = 1024) -> list[Item]:
        """Return the items ready now, without waiting.

        :raises anyio.WouldBlock: if nothing is ready
        :raises anyio.ClosedResourceError: if the subscription was closed
        :raises anyio.EndOfStream: after the :class:`Ended` item was returned
        """
        if self._closed:
            raise anyio.ClosedResourceError
        now = self.now()
        if self.liveness == "consume":
            self.alive_at = now
        items = self._collect(max_events, now)
        if items:
            return items
        if self._end_sent:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> Item:
        """Return the next item (see :meth:`receive_batch`)."""
        if not self._pending:
            self._pending.extend(await self.receive_batch(1))
        return self._pending.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def batches(self, max_events: int = 1024) -> AsyncIterator[list[Item]]:
        """Iterate over batches of items, for high-throughput consumers."""
        while True:
            try:
                yield await self.receive_batch(max_events)
            except anyio.EndOfStream:
                return

    def park_waker(self, waker: _Wakeable) -> None:
        """Wait without a task: ``waker.set()`` is called once, when the hub would have
        woken a task blocked in :meth:`receive_batch` (see :class:`ReadyQueue`).

        :raises anyio.BusyResourceError: if something already waits on this subscription
        """
        if self._wake is not None:
            raise anyio.BusyResourceError("receiving from")
        if self._closed:
            waker.set()
            return
        self._wake = waker
        self._hub.park(self)
        if any(cursor.behind for cursor in self._order):
            self._hub.defer_wake(self)  # its filter has more to match: after others ran

    def match_budget(self) -> tuple[Callable[[], float], float]:
        """The clock and the seconds of it one read may spend matching per namespace."""
        return self._hub.config.cpu_clock, self._hub.config.filters.match_slice

    def unpark(self) -> None:
        """Stop waiting (after a waker fired, or to give up waiting)."""
        self._wake = None
        self._hub.unpark(self)

    async def _wait(self) -> None:
        event = anyio.Event()
        self.park_waker(event)
        try:
            await event.wait()
        finally:
            self.unpark()

    def _collect(self, limit: int, now: float) -> list[Item]:
        out: list[object] = []
        if self._ended is not None and self._ended.reason is not EndReason.HUB_CLOSED:
            for cursor in self._order:
                cursor.flush_notices(out)
        else:
            self._take(limit, out, now)
        if self._ended is not None and not self._end_sent and not self._has_buffered():
            out.append(self._ended)
            self._end_sent = True
        elif self.heartbeat_seen < self._hub.heartbeat_id and self._ended is None:
            self.heartbeat_seen = self._hub.heartbeat_id
            out.append(
                Heartbeat(
                    self.heartbeat_seen,
                    {c.ns.name: c.ns.log.head for c in self._order},
                    self.hub_epoch,
                )
            )
        return out  # type: ignore[return-value]

    def _take(self, limit: int, out: list[object], now: float) -> None:
        order = self._order
        n = len(order)
        if not n:
            return
        start = self._rr = (self._rr + 1) % n
        for i in range(n):
            taken = order[(start + i) % n].take(limit, out, now)
            self.delivered += taken
            limit -= taken
            if limit <= 0:
                break

    def _has_buffered(self) -> bool:
        return any(c.buf or c.notices or c.replaying for c in self._order)

    # -- figures -------------------------------------------------------------------------

    def statistics(self) -> SubscriptionStatistics:
        """This subscription's figures."""
        now = self.now()
        for cursor in self._order:
            cursor.settle(now)
        kinds = {c.policy.kind.value for c in self._order}
        return SubscriptionStatistics(
            namespaces=tuple(self.cursors),
            delivered=self.delivered,
            dropped=self.dropped,
            buffered=sum(len(c.buf) for c in self._order),
            lag=max((c.pending() for c in self._order), default=0),
            policy=",".join(sorted(kinds)),
        )



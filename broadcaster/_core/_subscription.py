"""Subscriptions: what a subscriber holds, bound to the scope that opened it.

A subscription reaches its hub through :class:`Host` (what it needs of the hub, and
nothing else), so this module does not import the hub's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol

import anyio

from ._config import HubConfig, NamespaceConfig
from ._cursor import Cursor, evict_slow
from ._filters import Key, Matcher
from ._lag import LoopMonitor
from ._namespace import NamespaceState
from ._outlet import Outlet
from ._overflow import OverflowPolicy, overflow_policy
from ._policy import Policy
from ._stats import SubscriptionStatistics
from ._types import Ended, EndReason, Heartbeat, Item

__all__ = ["WIDE", "Host", "Liveness", "Subscription"]

#: Namespaces a subscription reads above which it is *wide*: its registration waits for
#: a turn of the event loop of its own (see :meth:`Broadcaster.prepare`), and its reads
#: go through the hub's list of namespaces appended to (:mod:`._recent`) instead of
#: looking at each of its cursors.
WIDE = 64


class _Wakeable(Protocol):
    def set(self) -> None: ...


class Host(Protocol):
    """The hub, as a subscription sees it."""

    @property
    def epoch(self) -> str: ...

    @property
    def heartbeat_id(self) -> int:
        """The newest heartbeat sent."""
        ...

    @property
    def config(self) -> HubConfig: ...

    def now(self) -> float: ...

    def random(self) -> float: ...

    async def prepare(self, sub: Subscription) -> None:
        """Open the durable logs *sub* needs before it registers (nothing with memory
        logs)."""
        ...

    def register(self, sub: Subscription) -> None: ...

    def unregister(self, sub: Subscription) -> None: ...

    async def wide_turn(self) -> None:
        """Return in a turn of the event loop of this wide work's own."""
        ...

    def park(self, sub: Subscription) -> None: ...

    def unpark(self, sub: Subscription) -> None: ...

    def defer_wake(self, sub: Subscription) -> None: ...

    def ack_ignored(self) -> None: ...


_NO_ITEMS: list[Item] = []  # shared, never mutated

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

    __slots__ = (
        "__weakref__", "_ack_due", "_acked_mark", "_after", "_attached", "_carry", "_closed",
        "_consumed_mark", "_dropped_before", "_end_sent", "_ended", "_epoch", "_hub", "_next",
        "_order", "_overflow", "_pending", "_registered", "_rr", "_seen", "_since",
        "_since_default", "_wake",
        "acked", "acked_at", "admit", "consumed_at", "cursors", "delivered",
        "heartbeat_maps", "heartbeat_seen", "keys", "liveness", "matcher", "namespaces",
        "outlet", "policy", "within",
    )

    def __init__(
        self,
        hub: Host,
        namespaces: tuple[str, ...] | None,
        matcher: Matcher | None,
        policy: Policy | None,
        since: int | Mapping[str, int] | None,
        since_default: int | None,
        epoch: str | Mapping[str, str] | None,
        liveness: Liveness,
        keys: frozenset[Key] | None = None,
        admit: Callable[[str], bool] | None = None,
        within: frozenset[str] | None = None,
    ) -> None:
        self._hub = hub
        self.namespaces = namespaces
        #: which namespaces an all-namespaces subscription may be attached to (None: all)
        self.admit = admit
        #: the only namespaces an all-namespaces subscription's filters can match (None:
        #: any): it is attached to those alone, and parks under their names
        self.within = within
        self.matcher = matcher
        # what every event *matcher* accepts has one of (None: not known); see _topics
        self.keys = keys
        self.policy = policy
        self._since = since
        self._since_default = since_default
        self._epoch = epoch
        self._after: dict[str, int] | None = None  # see opened_at()
        self.liveness = liveness
        self.cursors: dict[str, Cursor[NamespaceState]] = {}
        self._order: list[Cursor[NamespaceState]] = []
        self._overflow: OverflowPolicy | None = None  # the last one derived, for sharing
        # (namespace configuration, clamp, overflow policy) of the last attach
        self._attached: tuple[NamespaceConfig, bool, OverflowPolicy] | None = None
        self._rr = 0
        # wide reads (see _take): the cursors the last read left with something to
        # give (an ordered set), and the hub's append generation it had seen (-1: look at
        # every cursor at the next read)
        self._carry: dict[Cursor[NamespaceState], None] = {}
        self._seen = -1
        self._wake: _Wakeable | None = None  # the waiting task's event, or a ReadyQueue's
        self._registered = False
        self._closed = False
        self._ended: Ended | None = None
        self._end_sent = False
        self._pending: list[Item] = _NO_ITEMS  # the batch receive() is handing out
        self._next = 0
        self.heartbeat_seen = hub.heartbeat_id  # the newest heartbeat it was given
        self.acked = 0  # the newest heartbeat it answered
        self._ack_due = 0  # an answer to a heartbeat it has yet to be given
        self.acked_at = 0.0  # when it last answered one
        self.consumed_at = 0.0  # when it last read, or was seen waiting to read
        #: the edge stream it is read by, which says what time its client is charged
        #: with (None: all the time the loop was not stalled; see liveness_check)
        self.outlet: Outlet | None = None
        #: whether its Heartbeats carry the newest sequence and the epoch of each of its
        #: namespaces; an edge that sends its own (one per stream) turns it off: the two
        #: maps cost an entry per namespace per heartbeat (1,000 for an all-namespaces
        #: subscription over 1,000 namespaces)
        self.heartbeat_maps = True
        self._consumed_mark = 0.0  # outlet.written() when it last consumed
        self._acked_mark = 0.0  # outlet.owed() when it last answered a heartbeat
        self.delivered = 0
        self._dropped_before = 0  # by cursors it no longer has

    @property
    def topics(self) -> frozenset[str] | None:
        """The only topics its filters can match (None: any)."""
        keys = self.keys
        return None if keys is None else frozenset(key[0] for key in keys)

    # -- registration (called by the hub) ------------------------------------------

    @property
    def hub_epoch(self) -> str:
        return self._hub.epoch

    def attach(self, ns: NamespaceState, clamp: bool = False,
               after: int | None = None) -> Cursor[NamespaceState]:
        """Add a cursor for *ns*, positioned by this subscription's ``since``.

        :param clamp: cut the policy's bounds down to the namespace's limits instead of
            raising (for all-namespaces subscriptions meeting a new namespace)
        :param after: where to start when ``since`` says nothing of *ns* (an
            all-namespaces subscription meeting a namespace whose events from
            ``after + 1`` on it has not seen; None: live)
        """
        config, attached = ns.config, self._attached
        if attached is not None and attached[0] is config and attached[1] is clamp:
            overflow = attached[2]  # namespaces share their configuration: checked once
        else:
            policy = self.policy or config.default_policy
            if clamp:
                policy = config.clamp_policy(policy)
            overflow = self._overflow_of(config.check_policy(policy, ns.name))
            self._attached = (config, clamp, overflow)
        since = self._since
        if since is not None and not isinstance(since, int):  # (cheaper than Mapping's)
            since = since.get(ns.name, self._since_default)
        if since is None:
            since = after if after is not None or self._after is None else \
                self._after.get(ns.name)
        if since is not None:  # a replay: age retention is exact where it is observable
            ns.trim(self.now())  # (a live cursor starts after the head, whatever is kept)
        cursor = Cursor(self, ns, overflow)
        epoch = self._epoch
        if epoch is not None and not isinstance(epoch, str):
            epoch = epoch.get(ns.name)
        cursor.start(since, epoch)
        self.cursors[ns.name] = cursor
        self._order.append(cursor)
        self.touch(cursor)  # a replay, notices: looked at by the next read
        ns.add(cursor)
        return cursor

    def _overflow_of(self, policy: Policy) -> OverflowPolicy:
        """What acts on *policy*: one object for every cursor with the same policy."""
        overflow = self._overflow
        if overflow is None or overflow.policy != policy:
            overflow = self._overflow = overflow_policy(policy, self._hub.random)
        return overflow

    def resume_points(self) -> dict[str, int]:
        """The ``since`` of each namespace the subscription names a ``since`` for."""
        since = self._since
        if since is None:
            return {}
        if isinstance(since, Mapping):
            return dict(since)
        return dict.fromkeys(self.namespaces or (), since)

    def opened_at(self, namespace: str, head: int) -> None:
        """The durable log of *namespace* was opened for this subscription when its head
        was *head*: a live start begins after it (what arrived since, before the
        subscription could attach, is after its start too)."""
        if self._after is None:
            self._after = {}
        self._after[namespace] = head

    def start_positions(self) -> dict[str, int]:
        """Per namespace, the sequence after which this subscription started delivering
        (what a client must resume from if it has received nothing yet)."""
        return {name: cursor.start_after for name, cursor in self.cursors.items()}

    def epochs(self) -> dict[str, str]:
        """Per namespace, the epoch its sequences belong to."""
        return {name: cursor.ns.epoch for name, cursor in self.cursors.items()}

    def detach(self, ns: NamespaceState) -> None:
        """Leave *ns* for good (the hub removed it as idle): its cursor goes."""
        cursor = self.cursors.pop(ns.name, None)
        if cursor is not None:
            self._order.remove(cursor)
            self._carry.pop(cursor, None)
            self._dropped_before += cursor.dropped
            ns.remove(cursor)
            ns.unpark(self)

    def detach_all(self) -> None:
        """Leave every namespace; the cursors stay so that buffered items can drain."""
        wide = self.namespaces is None  # parks in the hub's notifier, not in namespaces
        for cursor in self._order:
            cursor.ns.remove(cursor)
            if not wide:
                cursor.ns.unpark(self)

    def now(self) -> float:
        return self._hub.now()

    def random(self) -> float:
        return self._hub.random()

    def touch(self, cursor: Cursor[Any]) -> None:
        """*cursor* was given something to deliver other than by an append (a notice, a
        new incarnation): the next read looks at it."""
        if self._seen >= 0:  # (else the next read looks at every cursor)
            self._carry[cursor] = None

    def may_read(self, name: str) -> bool:
        """Whether this all-namespaces subscription is attached to namespace *name*: its
        filters can match events there and ``admit`` allows it."""
        within, admit = self.within, self.admit
        return (within is None or name in within) and (admit is None or admit(name))

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
                cursor.discard()
                cursor.ns.count_eviction(reason)
        self._hub.unregister(self)
        self.wake()

    def _evict_slow(self) -> bool:
        """End the subscription if one of its cursors is over its bound; return whether."""
        slow = [cursor for cursor in self._order if cursor.slow]
        evict_slow(slow[:1])
        return bool(slow)

    @property
    def dropped(self) -> int:
        """Events dropped for it (reported, or to be reported before its next events)."""
        total = self._dropped_before
        for cursor in self._order:
            total += cursor.dropped
        return total

    @property
    def end_reason(self) -> Ended | None:
        """Why the hub ended this subscription, or None."""
        return self._ended

    @property
    def waiting(self) -> bool:
        return self._wake is not None

    # -- context manager ----------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        await self._hub.prepare(self)
        self.open()
        return self

    def open(self) -> None:
        """Register with the hub (what ``async with`` does on entry, after
        :meth:`Broadcaster.prepare`, which a hub with a durable store needs first)."""
        if self._registered or self._closed:
            raise RuntimeError("a subscription can be entered only once")
        self._hub.register(self)
        self._registered = True
        now = self.acked_at = self.consumed_at = self.now()
        outlet = self.outlet
        if outlet is not None:
            self._consumed_mark = outlet.written(now)
            self._acked_mark = outlet.owed(now)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """:meth:`close` (what ``async with`` does on exit), a subscription over more
        than :data:`WIDE` namespaces in a turn of the event loop of its own
        (:meth:`Broadcaster.wide_turn`): closing one walks all its namespaces (some 1-2
        ms for 1,000), and streams of many such subscriptions, cancelled together, would
        otherwise close them all in the same turn. The wait is shielded: the
        subscription is closed whatever cancels the caller."""
        if not self._closed and self._ended is None and len(self.cursors) > WIDE:
            with anyio.CancelScope(shield=True):
                await self._hub.wide_turn()
        self.close()

    def close(self) -> None:
        """Unregister now; a task blocked in :meth:`receive_batch` gets ClosedResourceError.
        (:meth:`aclose` waits for a turn of its own first if the subscription is wide.)"""
        if self._closed:
            return
        self._closed = True
        if self._ended is None:
            self._hub.unregister(self)
        self.wake()
        # Cursors point back at their subscription: drop them, so that reference counting
        # frees both at once rather than the cyclic collector, eventually.
        self._dropped_before = self.dropped
        self.cursors = {}
        self._order = []
        self._carry = {}

    # -- liveness ------------------------------------------------------------------------

    def ack(self, heartbeat_id: int) -> bool:
        """Answer the heartbeat *heartbeat_id*: proves the subscriber alive (required with
        ``liveness="ack"``).

        An ack counts once it answers a heartbeat this subscription was given (or the
        hub's newest when it was created) and is newer than the last one it answered. An
        ack of a heartbeat the hub sent but this subscription has not been given yet (a
        stream carries one heartbeat for all its subscriptions, and may have read another
        of them first) counts when it is given it. Any other (0, never sent, repeated) is
        ignored and counted in ``statistics().heartbeat_acks_ignored``.

        :returns: whether the ack counted now
        """
        if self._ended is not None or self._closed:
            return False
        if (type(heartbeat_id) is not int or heartbeat_id <= self.acked
                or heartbeat_id > self._hub.heartbeat_id):
            self._hub.ack_ignored()
            return False
        if heartbeat_id > self.heartbeat_seen:
            self._ack_due = max(self._ack_due, heartbeat_id)
            return False
        self.acked = heartbeat_id
        self._answered(self.now())
        return True

    def _answered(self, now: float) -> None:
        self.acked_at = now
        outlet = self.outlet
        if outlet is not None:
            self._acked_mark = outlet.owed(now)

    def liveness_check(self, now: float, limit: float, monitor: LoopMonitor) -> EndReason | None:
        """Why the hub should evict this subscription now, or None.

        Waiting for events counts as consuming. With ``liveness="consume"`` a subscription
        that has not consumed for *limit* seconds is dead (``heartbeat_timeout``); with
        ``"ack"``, one that has not answered a heartbeat for *limit* seconds is, and so is
        one that has events or notices ready and took none for *limit* seconds
        (``not_consuming``): acks alone do not keep a subscriber that stopped reading.

        Only the client's time counts. Time the event loop itself was stalled never does
        (*monitor*). A subscription read by an edge stream (:attr:`outlet`) is charged
        only with the time its stream waited on the client: since it last consumed, the
        time writes to the client were in flight (the client did not take what was
        sent); since it last answered, that and the time a heartbeat written to the
        client went unanswered, but no more than the current stretch of such time (a
        client that just owed nothing was alive: :meth:`Outlet.owing`). The stream's own
        backlog (waiting for its turn of a busy loop, reading other subscriptions, a
        heartbeat not written yet) is the server's."""
        outlet = self.outlet
        if self._wake is not None:
            self.consumed_at = now
            if outlet is not None:
                self._consumed_mark = outlet.written(now)
            if self.liveness == "consume":
                return None
        elif (monitor.silence(self.consumed_at, now) if outlet is None
              else outlet.written(now) - self._consumed_mark) > limit:
            if self.liveness == "consume":
                return EndReason.HEARTBEAT_TIMEOUT
            if self._has_ready(now):
                return EndReason.NOT_CONSUMING
        if self.liveness == "ack" and (
                monitor.silence(self.acked_at, now) if outlet is None
                else min(outlet.owed(now) - self._acked_mark, outlet.owing(now))) > limit:
            return EndReason.HEARTBEAT_TIMEOUT
        return None

    def _has_ready(self, now: float) -> bool:
        for cursor in self._order:
            cursor.settle(now)
        if self._evict_slow():
            return False
        return any(c.buf or c.notices or c.retries or c.replaying for c in self._order)

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
        now = self.consumed_at = self.now()
        outlet = self.outlet
        if outlet is not None:
            self._consumed_mark = outlet.written(now)
        items = self._collect(max_events, now)
        if items:
            return items
        if self._end_sent:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> Item:
        """Return the next item (see :meth:`receive_batch`)."""
        if self._next >= len(self._pending):
            self._pending = _NO_ITEMS
            self._pending, self._next = await self.receive_batch(1), 0
        item = self._pending[self._next]
        self._next += 1
        return item

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
        order = self._order
        if len(order) == 1 and self.namespaces is not None:  # the common case, in short
            cursor = order[0]
            cursor.ns.park(self)
            if cursor.behind:
                self._hub.defer_wake(self)
            return
        self._hub.park(self)
        # a behind cursor is one a read left with something to give: in the carry of a
        # wide read
        if any(cursor.behind for cursor in (self._carry if self._seen >= 0 else order)):
            self._hub.defer_wake(self)  # its filter has more to match: after others ran

    def match_budget(self) -> tuple[Callable[[], float], float]:
        """The clock and the seconds of it one read may spend matching per namespace."""
        return self._hub.config.cpu_clock, self._hub.config.filters.match_slice

    def unpark(self) -> None:
        """Stop waiting (after a waker fired, or to give up waiting)."""
        woken = self._wake is None
        self._wake = None
        if woken and len(self._order) == 1 and self.keys is None \
                and self.namespaces is not None:
            # its one namespace took it off its waiting set when it woke it. (A wake
            # from elsewhere leaves it there, and that namespace's next events wake it
            # once more: which does nothing unless it waits again, as it would then.)
            return
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
            if self._ack_due:  # answered before it was given: it counts now
                self.acked, self._ack_due = self._ack_due, 0
                self._answered(now)
            order = self._order if self.heartbeat_maps else ()
            out.append(
                Heartbeat(
                    self.heartbeat_seen,
                    {c.ns.name: c.ns.log.head for c in order},
                    self.hub_epoch,
                    {c.ns.name: c.ns.epoch for c in order},
                )
            )
        return out  # type: ignore[return-value]

    def _take(self, limit: int, out: list[object], now: float) -> None:
        order = self._order
        n = len(order)
        if n == 1:  # the common case, in short (what _take_from does with one cursor)
            self._seen = -1
            only = order[0]
            if _has_something(only):
                taken = only.take(limit, out, now)
                if only.slow:  # over its disconnect bound: evicted, gets nothing more
                    evict_slow((only,))
                    return
                self.delivered += taken
            return
        if not n:
            return
        if n <= WIDE:  # a look at each cursor costs less than keeping the carry
            self._seen = -1
            self._rr = (self._rr + 1) % n
            self._take_from(order, self._rr, limit, out, now, None)
            return
        # A wide subscription looks only at the cursors its last read left with something
        # to give (or that were given something since: touch, attach) and at those of
        # the namespaces appended to since (._recent), not at every cursor: a heartbeat
        # makes every subscription read.
        recent = order[0].ns.recent
        if self._seen < 0:  # the first read, or after reads that looked at every cursor
            self._rr = (self._rr + 1) % n
            candidates, start = order, self._rr
        else:
            carry, cursors = self._carry, self.cursors
            candidates, start = list(carry), 0
            for ns in recent.since(self._seen):
                cursor = cursors.get(ns.name)
                if cursor is not None and cursor.ns is ns and cursor not in carry:
                    candidates.append(cursor)
        self._seen = recent.gen
        self._carry = {}
        if not self._take_from(candidates, start, limit, out, now, self._carry):
            self._seen = -1

    def _take_from(self, cursors: list[Cursor[NamespaceState]], start: int, limit: int,
                   out: list[object], now: float,
                   carry: dict[Cursor[NamespaceState], None] | None) -> bool:
        """Take up to *limit* events from *cursors*, in turn from *start*, looking only
        at those with something to give; into *carry* (if given) those left with
        something, and those the limit left unread. Returns False if a cursor was over
        its disconnect bound (the subscription is evicted)."""
        n = len(cursors)
        for i in range(n):
            cursor = cursors[(start + i) % n]
            # a cursor with nothing to give is only looked at (what take() would find)
            if not _has_something(cursor):
                continue
            taken = cursor.take(limit, out, now)
            if cursor.slow:  # over its disconnect bound: evicted, gets nothing more
                evict_slow((cursor,))
                return False
            self.delivered += taken
            limit -= taken
            if carry is not None and _has_something(cursor):
                carry[cursor] = None
            if limit <= 0:
                if carry is not None:  # the others are looked at first by the next read
                    carry.update(dict.fromkeys(cursors[(start + j) % n]
                                               for j in range(i + 1, n)))
                break
        return True

    def _has_buffered(self) -> bool:
        return any(c.buf or c.notices or c.replaying for c in self._order)

    # -- what an edge reads -------------------------------------------------------------

    def latest_sequences(self) -> dict[str, int]:
        """The newest sequence of each namespace this subscription reads (what its next
        :class:`Heartbeat` carries)."""
        return {cursor.ns.name: cursor.ns.log.head for cursor in self._order}

    def policy_bounds(self) -> tuple[int, int]:
        """The tightest bounds its overflow policies put on what it may hold unread:
        ``(max_events, max_bytes)``, the smallest of each over the namespaces it reads
        and, for an all-namespaces subscription, those it would get in namespaces created
        later; ``max_bytes`` is 0 when no policy bounds bytes."""
        policies = [cursor.policy for cursor in self._order]
        if self.namespaces is None and not self._closed:
            config = self._hub.config
            for ns_config in (config.default_namespace, *config.namespaces.values()):
                policies.append(ns_config.clamp_policy(self.policy or ns_config.default_policy))
        if not policies:
            return 0, 0
        byte_bounds = [p.max_bytes for p in policies if p.max_bytes]
        return min(p.max_events for p in policies), min(byte_bounds, default=0)

    # -- figures -------------------------------------------------------------------------

    def statistics(self) -> SubscriptionStatistics:
        """This subscription's figures."""
        now = self.now()
        for cursor in self._order:
            cursor.settle(now)
        self._evict_slow()
        kinds = {c.policy.kind.value for c in self._order}
        return SubscriptionStatistics(
            namespaces=tuple(self.cursors),
            delivered=self.delivered,
            dropped=self.dropped,
            buffered=sum(len(c.buf) for c in self._order),
            lag=max((c.pending() for c in self._order), default=0),
            policy=",".join(sorted(kinds)),
        )


def _has_something(cursor: Cursor[NamespaceState]) -> bool:
    """Whether a read of *cursor* may give something: events, notices, retries, a
    replay, filtering left for later, an eviction, or new events in its namespace."""
    return bool(cursor.buf or cursor.notices or cursor.retries or cursor.replaying
                or cursor.behind or cursor.slow or cursor.accepted_end <= cursor.ns.log.head)

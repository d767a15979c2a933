"""The hub: namespaces, publishing, subscriptions and the background work that keeps
them honest (heartbeats, eviction of dead and slow subscribers, retention by age)."""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from ._admission import check_arguments, plan
from ._budget import Budget
from ._callbacks import Callback, CallbackHandle, CallbackRunner
from ._config import HubConfig, NamespaceConfig
from ._cursor import evict_slow
from ._filter_cache import FilterCache
from ._filters import Matcher
from ._items import CheckedItem, ItemChecker, PublishItem
from ._lag import LoopMonitor
from ._log import LogFactory, MemoryLog
from ._namespace import NamespaceState, check_burst
from ._notifier import Notifier
from ._payload import FieldCache, json_fields
from ._policy import Policy
from ._registry import NamespaceTable
from ._stats import HubStatistics
from ._subscription import Liveness, Subscription
from ._types import EndReason, Event
from ._upkeep import Upkeep
from ._validation import validate_namespace

__all__ = ["Broadcaster", "PublishItem"]

logger = logging.getLogger("broadcaster.hub")


class Broadcaster:
    """An in-process event hub. Use it as an async context manager: it owns its
    background tasks, and leaving it ends every subscription with ``hub_closed``.

    :param config: settings; defaults when None
    :param log_factory: builds a namespace's log (``MemoryLog`` by default)
    """

    def __init__(self, config: HubConfig | None = None, *, log_factory: LogFactory = MemoryLog):
        self.config = config or HubConfig()
        self.epoch = self.config.epoch or uuid.uuid4().hex[:16]
        self._random = random.Random(self.config.seed)
        self._budget = Budget(self.config.max_cursors, self.config.max_retained_bytes)
        self._table = NamespaceTable(self.config, log_factory, self._budget)
        self._namespaces = self._table.live
        self._subs: set[Subscription] = set()
        self._wildcard: dict[Subscription, None] = {}  # all-namespaces ones, oldest first
        self._items = ItemChecker()
        self._work = 0  # events published since a publisher last yielded
        self._last_publish = -math.inf
        # event. selectors read payloads through one cache; filter lists are interned
        limits = self.config.filters
        self.payload_fields = FieldCache(
            self.config.payload_fields or json_fields, max_events=limits.decode_cache_events,
            max_bytes=limits.decode_cache_bytes, max_payload=limits.max_decode_bytes)
        self.filter_cache = FilterCache(limits, self.payload_fields.fields)
        self._notifier = Notifier(self.config.notify_linger, self.config.wake_batch)
        self._tg: TaskGroup | None = None
        self._closed = False
        self.heartbeat_id = 0  # the newest heartbeat sent (0: none yet)
        self._upkeep = Upkeep(self.config, self._table, self._subs, self._remove,
                              self._heartbeat_sent)
        self.acks_ignored = 0
        self._monitor = LoopMonitor(self.config.loop_lag_interval,
                                    self._upkeep.liveness_limit * 4, 0.0)
        self.callbacks = CallbackRunner(self)
        self._clock: Callable[[], float] = anyio.current_time

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Broadcaster:
        if self._tg is not None or self._closed:
            raise RuntimeError("a Broadcaster can be entered only once")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._clock = _loop_clock()
        self._monitor = LoopMonitor(self.config.loop_lag_interval,
                                    self._upkeep.liveness_limit * 4, self.now())
        self._tg.start_soon(self._monitor.run, self._clock, name="broadcaster loop monitor")
        self._tg.start_soon(self._notifier.run, name="broadcaster notifier")
        self._tg.start_soon(self._upkeep.heartbeats, self.now, self._monitor,
                            name="broadcaster heartbeats")
        self._tg.start_soon(self._upkeep.sweeps, self.now, name="broadcaster overflow sweep")
        self._tg.start_soon(self.callbacks.watchdog, name="broadcaster callback watchdog")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(exc_type, exc, tb)

    def close(self) -> None:
        """End every subscription with ``hub_closed``; publishing fails from now on.
        Subscribers still receive what was already buffered for them, then :class:`Ended`."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            sub.end(EndReason.HUB_CLOSED, "the broadcaster is shutting down")

    @property
    def task_group(self) -> TaskGroup:
        if self._tg is None or self._closed:
            raise anyio.ClosedResourceError
        return self._tg

    def now(self) -> float:
        """The event loop's monotonic clock (trio's mock clock in tests)."""
        return self._clock()

    def random(self) -> float:
        return self._random.random()

    def _heartbeat_sent(self, heartbeat_id: int) -> None:
        self.heartbeat_id = heartbeat_id

    def ack_ignored(self) -> None:
        """Count a heartbeat ack that answered no heartbeat the subscription was given."""
        self.acks_ignored += 1

    # -- namespaces -------------------------------------------------------------------

    def namespace(self, name: str, field: str = "namespace") -> NamespaceState:
        """The state of namespace *name*, created on first use.

        :raises InvalidNamespace: if *name* is not a valid namespace
        :raises QuotaExceeded: if the hub has its maximum of namespaces
        """
        ns = self._namespaces.get(name)
        if ns is None:
            validate_namespace(name, field)
            self._table.check_room((name,), field)
            ns = self._create(name)
        return ns

    def _create(self, name: str) -> NamespaceState:
        """Create a namespace (valid, room checked) and attach the all-namespaces
        subscriptions to it, as many as the cursor budget allows: the newest of those
        that do not fit are ended (``cursor_limit``), never the publisher refused."""
        ns = self._table.create(name, self.now())
        budget, wildcard = self._budget, list(self._wildcard)  # oldest first
        while len(wildcard) > budget.max_cursors - budget.cursors:
            wildcard.pop().end(  # the newest goes, and frees its cursors
                EndReason.CURSOR_LIMIT,
                f"namespace {name!r} appeared and the hub has its maximum of "
                f"{budget.max_cursors} cursors (one per subscription and namespace): the "
                "newest all-namespaces subscriptions were ended; raise max_cursors "
                "([hub] max_cursors in the configuration file)",
            )
        for sub in wildcard:
            sub.attach(ns, clamp=True)
        return ns

    def _remove(self, ns: NamespaceState) -> None:
        """Remove an idle namespace; all-namespaces subscriptions leave it (they have
        nothing of it left to deliver) and meet it again if it comes back."""
        for sub in self._wildcard:  # the only ones left with a cursor in it
            sub.detach(ns)
        self._notifier.forget_namespace(ns)
        self._table.remove(ns)

    def account_cached(self, event: Event, size: int) -> None:
        """Note that an edge keeps *size* bytes of a serialized copy of *event* (in
        ``Event.encoded``): retention bounds and ``max_retained_bytes`` count them while
        the event is retained, so that they bound memory."""
        ns = self._namespaces.get(event.namespace)
        if ns is not None:
            ns.charge(event, size)

    def namespace_names(self) -> list[str]:
        return sorted(self._namespaces)

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self,
        namespace: str,
        topic: str,
        payload: bytes = b"",
        *,
        type_url: str = "",
        labels: Mapping[str, str] | None = None,
        timestamp_ns: int | None = None,
    ) -> int:
        """Publish one event and return its sequence in *namespace*.

        Costs the same whatever the number of subscribers, except when a subscriber
        with the ``block`` policy is full: then it waits for room, at most that policy's
        timeout.

        :raises InvalidNamespace, InvalidTopic, InvalidLabels: on malformed input
        :raises PayloadTooLarge: if *payload* exceeds the namespace's limit
        :raises QuotaExceeded: if the namespace's publish rate is exhausted
        :raises anyio.ClosedResourceError: if the hub is closed
        """
        item = PublishItem(topic, payload, type_url, labels or {}, timestamp_ns)
        return (await self.publish_many(namespace, (item,)))[0]

    async def publish_many(self, namespace: str, items: Iterable[PublishItem]) -> list[int]:
        """Publish several events to one namespace, all or none; return their sequences
        (consecutive: batches into one namespace do not interleave).

        A large batch is checked, then appended, ``publish_yield_every`` events at a
        time with a checkpoint in between, so that other tasks (other namespaces'
        publishers, health checks) run during it; subscribers get it slice by slice.
        Nothing is created (not even the namespace) unless the whole batch is accepted.

        :raises: as :meth:`publish`, naming ``items[i]`` for the event at fault
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise anyio.ClosedResourceError
        ns = self._namespaces.get(namespace)
        if ns is None:
            validate_namespace(namespace)
        config = self.config.namespace(namespace) if ns is None else ns.config
        batch = items if isinstance(items, list | tuple) else list(items)
        every = self.config.publish_yield_every
        max_size = min(config.retention.max_bytes, self.config.max_retained_bytes)
        if len(batch) <= every:
            check = self._items.check
            checked = [check(config, i, item, max_size) for i, item in enumerate(batch)]
        else:
            checked = await self._check_slices(config, batch, max_size)
            if self._closed:
                raise anyio.ClosedResourceError
            ns = self._namespaces.get(namespace)  # it may have come or gone meanwhile
        if not checked:
            return []
        if ns is None:
            self._table.check_room((namespace,), "namespace")
            check_burst(namespace, config, len(checked))
            ns = self._create(namespace)
        if ns.busy is not None or ns.block_cursors or len(checked) > every:
            return await self._append_slices(ns, checked)
        # the common case: one slice, nobody to wait for
        now = self._publish_time()
        ns.take_token(now, len(checked))
        appended = ns.append(checked, now, self.config.wall_clock)
        self._appended(ns, len(checked))
        if self._work >= every:
            self._work = 0
            await anyio.lowlevel.cancel_shielded_checkpoint()
        return [event.sequence for event in appended]

    async def _check_slices(self, config: NamespaceConfig, batch: Sequence[PublishItem],
                            max_size: int) -> list[CheckedItem]:
        """Check a large batch ``publish_yield_every`` items at a time, with checkpoints
        in between (nothing has changed yet, so this may be cancelled)."""
        check, every = self._items.check, self.config.publish_yield_every
        checked: list[CheckedItem] = []
        for start in range(0, len(batch), every):
            if start:
                await anyio.lowlevel.checkpoint()
            checked.extend(check(config, i, batch[i], max_size)
                           for i in range(start, min(start + every, len(batch))))
        return checked

    async def _append_slices(self, ns: NamespaceState, checked: list[CheckedItem]
                             ) -> list[int]:
        """Append a batch ``publish_yield_every`` events at a time (as room appears, with
        ``block`` subscribers), yielding in between; batches of the namespace wait for
        each other, so that each one's sequences are consecutive."""
        every, wall = self.config.publish_yield_every, self.config.wall_clock
        seqs: list[int] = []
        await ns.begin_batch()
        try:
            ns.take_token(self.now(), len(checked))
            while len(seqs) < len(checked):
                count = min(len(checked) - len(seqs), every)
                if ns.block_cursors:  # a batch larger than the room goes in as room appears
                    count = await ns.wait_for_room(count, self.now)
                done = len(seqs)
                appended = ns.append(checked[done : done + count], self._publish_time(), wall)
                seqs.extend(event.sequence for event in appended)
                self._appended(ns, count)
                if self._work >= every:
                    self._work = 0
                    await anyio.lowlevel.cancel_shielded_checkpoint()
        finally:
            ns.end_batch()
        return seqs

    def _appended(self, ns: NamespaceState, count: int) -> None:
        self._notifier.mark(ns)  # its parked readers are woken by the notifier's task
        if self._budget.over:
            self._budget.trim()
        self._work += count

    def _publish_time(self) -> float:
        """The loop clock, made strictly increasing over publishes (by the smallest step
        a float allows), so that "oldest first" across namespaces is a total order even
        on a clock that has not moved."""
        now = self.now()
        if now <= self._last_publish:
            now = math.nextafter(self._last_publish, math.inf)
        self._last_publish = now
        return now

    def defer_wake(self, sub: Subscription) -> None:
        """Wake *sub*, parked with events its filter has not matched yet, at the
        notifier's next pass: after the tasks ready now have run."""
        self._notifier.defer(sub)

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        namespaces: str | Sequence[str] | None,
        *,
        filters: Sequence[str] = (),
        policy: Policy | None = None,
        since: int | Mapping[str, int] | None = None,
        since_default: int | None = None,
        epoch: str | None = None,
        liveness: Liveness = "consume",
    ) -> Subscription:
        """Make a subscription; it registers when its ``async with`` is entered.

        :param namespaces: one namespace, several, or None for every namespace
            (including those created later)
        :param filters: containerd filters; an event matches if any filter matches
        :param policy: overflow policy; the namespace's default when None
        :param since: resume after this sequence (an int for every namespace, or a
            mapping per namespace); None means live events only
        :param since_default: with a *since* mapping, where namespaces it does not list
            start (None: live); resuming an all-namespaces subscription passes 0, so that
            namespaces created while the subscriber was away are replayed
        :param epoch: the epoch *since* refers to; a different one gets a
            :class:`ResyncNotice` and replay from the oldest retained event
        :param liveness: ``"consume"``: reading proves the subscriber alive;
            ``"ack"``: only :meth:`Subscription.ack` does (for network edges)
        :raises InvalidNamespace, InvalidFilter, InvalidPolicy: on malformed input
        """
        names = check_arguments(namespaces, since, since_default, policy, liveness)
        matcher, topics = self._matcher(filters)
        return Subscription(self, names, matcher, policy, since, since_default, epoch, liveness,
                            topics)

    def _matcher(self, filters: Sequence[str]
                 ) -> tuple[Matcher | None, frozenset[str] | None]:
        """Compile *filters*, and find the only topics they can match (None: any).

        Identical filter lists share one matcher (within the bounds of
        ``HubConfig.filters``), so that their subscriptions share each filtered read of
        the log."""
        compiled = self.filter_cache.get(filters)
        return compiled.matcher, compiled.topics

    def register(self, sub: Subscription) -> None:
        """Attach *sub* to its namespaces. Everything is checked first (names, quotas,
        the namespace and cursor limits counting what would be created, policies), so a
        refused subscription leaves nothing behind.

        :raises QuotaExceeded, InvalidPolicy: as :meth:`subscribe` describes
        """
        if self._closed:
            raise anyio.ClosedResourceError
        targets, new = plan(sub.namespaces, sub.policy, self._table, self.config, self._budget,
                            len(self._wildcard))
        targets.extend(self._create(name) for name in new)
        for ns in targets:
            sub.attach(ns)
        self._subs.add(sub)
        if sub.namespaces is None:
            self._wildcard[sub] = None

    def unregister(self, sub: Subscription) -> None:
        self._notifier.forget(sub)
        sub.detach_all()
        self._subs.discard(sub)
        self._wildcard.pop(sub, None)

    def park(self, sub: Subscription) -> None:
        """Note that *sub* waits for events."""
        if sub.namespaces is None:
            self._notifier.park_wildcard(sub)
        for cursor in sub.cursors.values():
            cursor.ns.park(sub)

    def unpark(self, sub: Subscription) -> None:
        self._notifier.unpark(sub)
        for cursor in sub.cursors.values():
            cursor.ns.unpark(sub)

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    # -- callbacks ------------------------------------------------------------------------

    def on_event(
        self,
        callback: Callback,
        namespaces: str | Sequence[str] | None = None,
        *,
        filters: Sequence[str] = (),
        policy: Policy | None = None,
        thread: bool = False,
        name: str | None = None,
    ) -> CallbackHandle:
        """Call *callback* with every matching event (and every :class:`DropNotice` or
        :class:`ResyncNotice`), in a task of its own, outside any lock.

        Safe to call from inside a callback; so is :meth:`CallbackHandle.remove`. A
        callback running longer than ``callback_timeout`` is logged and counted while the
        others go on; an exception is logged and counted and the callback stays
        registered. Sync callbacks run on the event loop unless *thread* is True.

        :returns: a handle whose ``remove()`` unregisters the callback
        """
        sub = self.subscribe(namespaces, filters=filters, policy=policy)
        return self.callbacks.add(sub, callback, thread=thread, name=name)

    # -- figures --------------------------------------------------------------------------

    def statistics(self) -> HubStatistics:
        """Figures of the hub and every namespace (settles pending drops first)."""
        now, budget = self.now(), self._budget
        for ns in list(self._namespaces.values()):
            evict_slow(ns.settle_figures(now))
        return HubStatistics(
            epoch=self.epoch,
            subscriptions=len(self._subs),
            namespaces={n: ns.statistics() for n, ns in sorted(self._namespaces.items())},
            callbacks=self.callbacks.count,
            callback_errors=self.callbacks.errors,
            slow_callbacks=self.callbacks.slow,
            heartbeat_acks_ignored=self.acks_ignored,
            loop_lag=self._monitor.lag,
            loop_lag_histogram=self._monitor.histogram(),
            loop_stalled_seconds=self._monitor.stalled,
            namespaces_removed=self._table.removed,
            cursors=budget.cursors,
            max_cursors=budget.max_cursors,
            retained_bytes=budget.retained_bytes,
            max_retained_bytes=budget.max_retained_bytes,
            budget_trimmed_events=budget.trimmed_events,
            budget_trimmed_bytes=budget.trimmed_bytes,
        )


def _loop_clock() -> Callable[[], float]:
    """The running event loop's clock, looked up once: ``anyio.current_time`` finds the
    backend and the loop on every call (1.2 us here, against 0.16 us for the loop's own
    ``time``), and the hub reads the clock for every batch it hands out."""
    try:
        from anyio._core._eventloop import get_async_backend
    except ImportError:  # pragma: no cover - a future anyio moved it
        return anyio.current_time
    backend = get_async_backend()
    loop_time = getattr(backend.current_token(), "time", None)  # asyncio: the loop's timers'
    return loop_time if callable(loop_time) else backend.current_time

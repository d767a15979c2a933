"""Per-namespace state: the log, the cursors reading it, counters and quotas.

A namespace records its own figures: what was published (when it appends), delivered
and dropped (its cursors tell it), and evicted. It knows subscriptions only as
:class:`Waiter` (parked on it) and through its cursors' :class:`Reader`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Generator, Hashable, Iterable, Sequence
from typing import Protocol, TypeVar

import anyio

from ._budget import Budget, Entry
from ._config import NamespaceConfig
from ._cursor import Cursor, evict_slow
from ._dedup import DedupWindow
from ._durable import DurableLog, Stored
from ._errors import QuotaExceeded
from ._filters import Key, Matcher
from ._items import CheckedItem
from ._log import EventLog
from ._payload import FieldLookup
from ._recent import Recent
from ._scan import Clock, scan
from ._stats import LATENCY_BUCKETS, LatencyStatistics, NamespaceStatistics
from ._topics import TopicIndex
from ._types import AvailabilityNotice, DropReason, EndReason, Event

__all__ = ["NamespaceState", "Waiter", "check_burst"]

_L = TypeVar("_L", bound=Hashable)  # what waiters are parked under: a key, a name


class Waiter(Protocol):
    """A subscription parked on a namespace, waiting for its events."""

    @property
    def keys(self) -> frozenset[Key] | None:
        """Only an event with one of these keys wakes it (None: any publish; see
        :mod:`._topics`)."""
        ...

    @property
    def within(self) -> frozenset[str] | None:
        """An all-namespaces subscription that reads only these namespaces (None: any;
        see :meth:`Notifier.park_wildcard`)."""
        ...

    def wake(self) -> None: ...

_FILTER_CACHE_EVENTS = 4096  # the largest filtered read kept for sharing
_FILTER_CACHE_ENTRIES = 1024  # distinct matchers remembered per namespace


def _no_fields(event: Event) -> FieldLookup | None:
    return None


def park_waiter(sub: Waiter, waiting: set[Waiter], by_key: dict[Key, set[Waiter]]) -> None:
    """Note that *sub* waits: in *waiting* if any event wakes it, else under each of its
    keys in *by_key* (a namespace's parked subscriptions, or the notifier's
    all-namespaces ones)."""
    keys = sub.keys
    if keys is None:
        waiting.add(sub)
    else:
        park_under(sub, keys, by_key)


def unpark_waiter(sub: Waiter, waiting: set[Waiter], by_key: dict[Key, set[Waiter]]
                  ) -> None:
    """Undo :func:`park_waiter` (nothing if *sub* is not parked there); a key left without
    waiters is removed."""
    keys = sub.keys
    if keys is None:
        waiting.discard(sub)
    else:
        unpark_under(sub, keys, by_key)


def park_under(sub: Waiter, labels: Iterable[_L], index: dict[_L, set[Waiter]]) -> None:
    """Note that *sub* waits under each of *labels* (keys, namespace names) in *index*."""
    for label in labels:
        waiters = index.get(label)
        if waiters is None:
            waiters = index[label] = set()
        waiters.add(sub)


def unpark_under(sub: Waiter, labels: Iterable[_L], index: dict[_L, set[Waiter]]) -> None:
    """Undo :func:`park_under` (nothing where *sub* is not parked); a label left without
    waiters is removed."""
    for label in labels:
        waiters = index.get(label)
        if waiters is not None:
            waiters.discard(sub)
            if not waiters:
                del index[label]


def check_burst(name: str, config: NamespaceConfig, count: int) -> None:
    """Whether a namespace not yet created could take *count* events at once (its token
    bucket starts full).

    :raises QuotaExceeded: as :meth:`NamespaceState.take_token` would
    """
    rate = config.max_publish_rate
    if rate is not None and count > config.publish_burst:
        raise _over_rate(name, rate)


def _over_rate(name: str, rate: float) -> QuotaExceeded:
    return QuotaExceeded("namespace", f"namespace {name!r} is over its rate of {rate:g} events/s")


class NamespaceState:
    """Everything the hub keeps for one namespace."""

    def __init__(self, name: str, config: NamespaceConfig, log: EventLog, now: float,
                 budget: Budget, epoch: str = "", durable: DurableLog | None = None,
                 payload_of: Callable[[Event], FieldLookup | None] | None = None,
                 wild_keys: dict[Key, set[Waiter]] | None = None, *,
                 recent: Recent[NamespaceState]) -> None:
        self.name = name
        self.recent = recent  # the hub's namespaces in the order of their last append
        self.config = config
        self.log = log
        self.budget = budget
        self.epoch = epoch  # the incarnation its sequences belong to
        # a durable log (local, jetstream) is appended to with ``await durable.append``,
        # and its events arrive through :meth:`arrived`; None for the memory log
        self.durable = durable
        self.dedup: DedupWindow | None = None  # event ids seen (memory log; made on first id)
        self.deduplicated = 0  # publishes of an event id already stored
        self.available = True  # the durable log can store and feed events
        self.unavailable_reason = ""
        self.budget_entry: Entry | None = None  # its place on the budget's heap
        self.idle_since: float | None = None
        self.busy: anyio.Event | None = None  # set while a batch is published in slices
        self.cursors: set[Cursor[NamespaceState]] = set()
        self.pinned = 0  # cursors of subscriptions that named it (not all-namespaces ones)
        # cursors whose policy holds publishers back (block), and those that must be
        # settled periodically (they evict, or events wait for a retry)
        self.block_cursors: set[Cursor[NamespaceState]] = set()
        self.sweep_cursors: set[Cursor[NamespaceState]] = set()
        self.waiting: set[Waiter] = set()
        # keyed subscriptions (filters requiring topics, maybe payload fields) wait under
        # their keys, and only an event with one of them wakes them
        self.waiting_keys: dict[Key, set[Waiter]] = {}
        self.burst_keys: set[Key] = set()  # published (noted) since the last notify
        # keyed all-namespaces subscriptions wait under their keys in the hub's index,
        # shared by every namespace (they do not park in each namespace: see park())
        self.wild_keys: dict[Key, set[Waiter]] = {} if wild_keys is None else wild_keys
        # the keys its subscriptions have, and where events with them were published
        self.topics = TopicIndex(payload_of or _no_fields, self.waiting_keys, self.burst_keys,
                                 self.wild_keys)
        # the last filtered read per matcher: subscriptions sharing a filter (interned by
        # the hub) and a position filter the log once between them
        self.filtered: dict[Matcher, tuple[int, int, list[Event], int]] = {}
        self.room: anyio.Event | None = None
        self.published = 0
        self.delivered = 0
        self.dropped: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.changed = True  # since the last statistics(): figures must be recomputed
        self.swept_head = 0  # the head when sweep() last ran
        self.retrying = False  # some cursor has events waiting for a retry
        self.max_lag = 0
        self.tokens = float(config.publish_burst)
        self.tokens_at = now

    # -- cursors ---------------------------------------------------------------

    def add(self, cursor: Cursor[NamespaceState]) -> None:
        if cursor in self.cursors:
            return
        keys = cursor.sub.keys
        if keys is not None:
            self.topics.watch(keys, self.log.head)
        self.cursors.add(cursor)
        self.budget.cursors += 1
        self.changed = True
        if cursor.sub.namespaces is not None:
            self.pinned += 1
        if cursor.overflow.blocks:
            self.block_cursors.add(cursor)
        if cursor.overflow.sweep:
            self.sweep_cursors.add(cursor)

    def remove(self, cursor: Cursor[NamespaceState]) -> None:
        if cursor not in self.cursors:
            return
        keys = cursor.sub.keys
        if keys is not None:
            self.topics.unwatch(keys)
        self.cursors.discard(cursor)
        self.budget.cursors -= 1
        self.changed = True
        if cursor.sub.namespaces is not None:
            self.pinned -= 1
        self.block_cursors.discard(cursor)
        self.sweep_cursors.discard(cursor)
        self.wake_publishers()

    def unused_since(self, now: float, configured: bool) -> float | None:
        """Since when it has been unused: no retained events, no subscription naming it,
        no batch going in, no event ids remembered, and not *configured* (*now* if it
        just became so); None while it is used."""
        log = self.log
        if (self.pinned or log.first <= log.head or self.busy is not None or configured
                or self.dedup):
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        return self.idle_since

    def check_subscription_quota(self, field: str = "namespaces") -> None:
        limit = self.config.max_subscriptions
        if len(self.cursors) >= limit:
            raise QuotaExceeded(
                field, f"namespace {self.name!r} has its maximum of {limit} subscriptions"
            )

    # -- publishing ---------------------------------------------------------------

    def take_token(self, now: float, count: int = 1) -> None:
        """Charge the publish rate quota.

        :raises QuotaExceeded: if the namespace's rate is exhausted
        """
        rate = self.config.max_publish_rate
        if rate is None:
            return
        burst = self.config.publish_burst
        self.tokens = min(burst, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens < count:
            raise _over_rate(self.name, rate)
        self.tokens -= count

    def check_tokens(self, now: float, count: int) -> None:
        """Whether :meth:`take_token` could take *count* now, taking nothing.

        :raises QuotaExceeded: as :meth:`take_token` would
        """
        rate = self.config.max_publish_rate
        if rate is None:
            return
        tokens = min(self.config.publish_burst, self.tokens + (now - self.tokens_at) * rate)
        if tokens < count:
            raise _over_rate(self.name, rate)

    # -- the log ---------------------------------------------------------------------

    def append(self, items: Sequence[CheckedItem], now: float,
               wall: Callable[[], int]) -> list[Event]:
        """Append checked events, apply retention, account their bytes; return them."""
        log = self.log
        before = log.retained_bytes
        appended = [
            log.append(topic, payload, type_url, labels, wall() if ts is None else ts,
                       now, size)
            for topic, payload, type_url, labels, ts, size in items
        ]
        log.trim(now)
        self.budget.retained_bytes += log.retained_bytes - before
        self.changed = True
        self.recent.note(self)
        if self.topics.watchers:
            self.topics.note(appended, log.first)
        self.published += len(appended)
        if self.budget_entry is None:
            self.budget.track(self)
        return appended

    def deduplicate(self, ids: Sequence[str | None], now: float, window: float,
                    max_ids: int) -> tuple[list[int], list[int]]:
        """Look event *ids* up in the deduplication window (memory log; made with
        *window* seconds and *max_ids* on first use). Returns the sequences (the original
        one of a duplicate; 0 for an item to append; ``-1 - j`` for the second item of
        one batch with the id of item ``j``) and the indexes of the items to append;
        :meth:`remember` fills in the sequences of those once appended."""
        dedup = self.dedup
        if dedup is None:
            dedup = self.dedup = DedupWindow(window, max_ids)
        seqs = [0] * len(ids)
        fresh: list[int] = []
        first: dict[str, int] = {}
        for i, event_id in enumerate(ids):
            if event_id is not None:
                seq = dedup.get(event_id, now)
                if seq is None and event_id in first:
                    seq = -1 - first[event_id]
                if seq is not None:
                    seqs[i] = seq
                    continue
                first[event_id] = i
            fresh.append(i)
        self.deduplicated += len(ids) - len(fresh)
        return seqs, fresh

    def remember(self, ids: Sequence[str | None], fresh: Sequence[int],
                 appended: Sequence[int], seqs: list[int], now: float) -> None:
        """Fill in *seqs* with the sequences *appended* of the *fresh* items (see
        :meth:`deduplicate`) and remember their ids."""
        dedup = self.dedup
        assert dedup is not None
        for i, seq in zip(fresh, appended, strict=True):
            seqs[i] = seq
            event_id = ids[i]
            if event_id is not None:
                dedup.put(event_id, seq, now)

    def stored(self, stored: Sequence[Stored]) -> list[int]:
        """The sequences of what a durable log stored (counting the duplicates it
        recognised)."""
        duplicates = sum(1 for s in stored if s.duplicate)
        if duplicates:
            self.deduplicated += duplicates
        return [s.sequence for s in stored]

    def arrived(self, events: Sequence[Event]) -> None:
        """Count *events*, which entered the durable log's history (published here or,
        on a shared log, by another node), and note their keys."""
        self.changed = True
        self.recent.note(self)
        if self.topics.watchers:
            self.topics.note(events, self.log.first)
        self.published += len(events)

    def reset(self, epoch: str) -> None:
        """The durable log began a new incarnation (*epoch*): every cursor starts over
        from its oldest event, after a ``ResyncNotice(epoch_changed)``."""
        self.epoch = epoch
        self.topics.reset(self.log.head)
        self.filtered.clear()
        self.changed = True
        for cursor in list(self.cursors):
            cursor.restart()

    def wake_readers(self) -> None:
        """Wake every subscription reading it (parked or not), to read again."""
        for cursor in list(self.cursors):
            cursor.sub.wake()

    def availability_changed(self, available: bool, reason: str) -> bool:
        """Note that the durable log became unavailable (or available again) and tell
        every reader, with an :class:`AvailabilityNotice` before its next event; return
        whether anything changed."""
        if self.available == available:
            return False
        self.available = available
        self.unavailable_reason = "" if available else reason
        self.changed = True
        notice = AvailabilityNotice(self.name, available, reason)
        for cursor in self.cursors:
            cursor.tell(notice)
        return True

    def trim(self, now: float) -> None:
        """Apply retention by age."""
        log = self.log
        before, first = log.retained_bytes, log.first
        log.trim(now)
        if self.durable is None:
            self.budget.retained_bytes += log.retained_bytes - before
        if self.dedup is not None:
            self.dedup.expire(now)
        if log.first != first:
            self.changed = True

    def charge(self, event: Event, size: int) -> None:
        """Count an edge's cached copy of *event* (*size* bytes) while it is retained."""
        log = self.log
        if self.durable is None and log.first <= event.sequence <= log.head:
            log.charge(event, size)
            self.budget.retained_bytes += size
            if self.budget.over:
                self.budget.trim()

    def oldest_published_at(self) -> float | None:
        """When the oldest retained event was published, or None if none is retained."""
        log = self.log
        oldest = log.read(log.first, log.first + 1)
        return oldest[0].published_at if oldest else None

    def shed(self, until: float, excess: int) -> tuple[int, int]:
        """Drop the oldest retained events published at or before *until* until *excess*
        bytes are freed (for the hub's budget); return the events and bytes dropped."""
        log = self.log
        first = stop = log.first
        freed, head = 0, log.head
        while stop <= head and freed < excess:
            chunk = log.read(stop, min(stop + 256, head + 1))
            for event in chunk:
                if event.published_at > until or freed >= excess:
                    break
                freed += event.size
                stop = event.sequence + 1
            else:
                continue
            break
        if stop == first:
            return 0, 0
        before = log.retained_bytes
        log.drop_before(stop)
        self.budget.retained_bytes += log.retained_bytes - before
        self.changed = True
        return stop - first, before - log.retained_bytes

    def park(self, sub: Waiter) -> None:
        """Note that *sub* waits for this namespace's events."""
        park_waiter(sub, self.waiting, self.waiting_keys)

    def unpark(self, sub: Waiter) -> None:
        unpark_waiter(sub, self.waiting, self.waiting_keys)

    @property
    def unnoted(self) -> bool:
        """Whether events wait for the notifier to read their fields."""
        return bool(self.topics.pending)

    def note_fields(self, limit: int) -> bool:
        """Read the fields of up to *limit* events waiting for it (see :mod:`._topics`);
        return whether more wait."""
        return self.topics.note_fields(self.log.first, limit)

    def take_waiters(self, out: list[Waiter]) -> None:
        """Move into *out* the subscriptions to wake after a burst (once per burst): those
        waiting for this namespace, and those waiting for a key published in it (here,
        or as all-namespaces subscriptions in the hub's index)."""
        if self.waiting:
            out.extend(self.waiting)
            self.waiting.clear()
        if self.burst_keys:
            wild = self.wild_keys
            for key in self.burst_keys:
                waiters = self.waiting_keys.pop(key, None)
                if waiters:
                    out.extend(waiters)
                if wild:
                    waiters = wild.pop(key, None)
                    if waiters:
                        out.extend(waiters)
            self.burst_keys.clear()

    def trim_topics(self) -> None:
        """Forget the sequences retention trimmed, for keys not published lately."""
        self.topics.trim(self.log.first)

    def listing(self, keys: frozenset[Key], start: int, stop: int
                ) -> tuple[list[int] | None, int]:
        """What a cursor with *keys* must read of ``[start, stop)``: see
        :meth:`TopicIndex.listing`."""
        return self.topics.listing(keys, start, stop)

    def lost_since(self, keys: frozenset[Key], start: int) -> bool:
        """True if retention trimmed an event with one of *keys* at or after *start*."""
        return self.topics.lost_since(keys, start, self.log.first)

    def filter(self, matcher: Matcher, start: int, stop: int, clock: Clock | None = None,
               budget: float = 0.0) -> tuple[list[Event], int]:
        """The events with ``start <= sequence < end`` that *matcher* accepts, and *end*
        (*stop*, or less if *budget* seconds of *clock* ran out: see :func:`scan`),
        computed once for every subscription that shares *matcher* and reads the same
        range."""
        hit = self.filtered.get(matcher)
        if hit is not None and hit[0] == start and hit[1] == stop:
            return hit[2], hit[3]
        events, end = scan(self.log, matcher, start, stop, clock, budget)
        if len(events) <= _FILTER_CACHE_EVENTS:  # small results only: they pin events
            if len(self.filtered) >= _FILTER_CACHE_ENTRIES:
                self.filtered.clear()
            self.filtered[matcher] = (start, stop, events, end)
        return events, end

    async def wait_for_room(self, count: int, clock: Callable[[], float]) -> int:
        """Wait until every blocking subscriber has room, at most the block timeout of
        the fullest; return how many of *count* events to append now (all of them once
        the wait timed out: then their policies' fallbacks decide)."""
        now = clock()
        deadline: float | None = None
        while True:
            room, timeout = self._block_room(now)
            if room > 0:
                return min(count, room)
            if deadline is None:
                deadline = now + timeout
            if now >= deadline:
                return count
            if self.room is None:
                self.room = anyio.Event()
            with anyio.move_on_after(deadline - now):
                await self.room.wait()  # set when a blocking subscriber reads or leaves
            now = clock()

    def _block_room(self, now: float) -> tuple[int, float]:
        """How many events every blocking cursor has room for now, and the block timeout
        of the fullest. A cursor whose policy gives up on its subscriber while it is
        settled (``block`` falling back to ``disconnect``) holds no one back: its
        subscriber is evicted once the loop is done."""
        room, timeout = 1 << 62, 0.0
        slow: list[Cursor[NamespaceState]] = []
        for cursor in self.block_cursors:
            r = cursor.room(now)
            if cursor.slow:
                slow.append(cursor)
            elif r < room:
                room, timeout = r, cursor.policy.block_timeout
        if slow:
            evict_slow(slow)
        return room, timeout

    async def begin_batch(self) -> None:
        """Start publishing a batch in slices, once other batches of this namespace are
        done: each batch's sequences are consecutive. :meth:`end_batch` must follow."""
        while self.busy is not None:
            await self.busy.wait()
        self.busy = anyio.Event()

    def end_batch(self) -> None:
        busy, self.busy = self.busy, None
        if busy is not None:
            busy.set()

    def wake_publishers(self) -> None:
        if self.room is not None:
            self.room.set()
            self.room = None

    @property
    def sweep_due(self) -> bool:
        """Whether the sweep has something to do: cursors to sweep, and events published
        since it last ran or retries waiting."""
        return bool(self.sweep_cursors) and (self.log.head != self.swept_head or self.retrying)

    def sweep(self, now: float) -> list[Cursor[NamespaceState]]:
        """Settle the cursors that must be settled periodically (``disconnect`` and
        ``retry``, and ``block`` falling back to ``disconnect``): expired retries are
        counted even if nobody reads. Return the cursors whose subscriber is over its
        bound, for the hub to evict."""
        self.swept_head = self.log.head
        cursors = list(self.sweep_cursors)
        for cursor in cursors:
            cursor.settle(now)
        self.retrying = any(cursor.retries for cursor in cursors)
        return [cursor for cursor in cursors if cursor.slow]

    def note_retries(self) -> None:
        self.retrying = True

    # -- counting -----------------------------------------------------------------------

    def settle_figures(self, now: float) -> list[Cursor[NamespaceState]]:
        """Bring the figures :meth:`statistics` reports up to date, if anything happened
        since the last time: settle the cursors that may have drops due (so that a
        scrape counts them; see :meth:`Cursor.lag`) and find the largest lag. Return the
        cursors whose subscriber is over its bound, for the hub to evict."""
        steps = self.settle_steps(now, step=0)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def settle_steps(self, now: float, step: int = 256
                     ) -> Generator[None, None, list[Cursor[NamespaceState]]]:
        """:meth:`settle_figures` a step at a time: yields after every *step* cursors (0:
        never), so that a caller can let other tasks run in between; a cursor closed
        meanwhile is skipped. Returns what :meth:`settle_figures` returns."""
        if not (self.changed or self.sweep_cursors):
            return []
        self.changed = False
        max_lag, slow = 0, []
        cursors = self.cursors
        for i, cursor in enumerate(list(cursors)):
            if step and i and i % step == 0:
                yield
            if cursor not in cursors:
                continue
            lag = cursor.lag(now)
            if cursor.slow:
                slow.append(cursor)
            elif lag > max_lag:
                max_lag = lag
        self.max_lag = max_lag
        return slow

    def count_drop(self, reason: DropReason, count: int) -> None:
        self.dropped[reason.value] += count

    def count_eviction(self, reason: EndReason) -> None:
        self.evicted[reason.value] += 1

    def delivered_chunk(self, chunk: Sequence[Event], now: float, live: bool = True) -> None:
        """Count a delivered chunk; its latency is its oldest event's age, once per event
        (replayed history is counted as delivered but not as latency)."""
        n = len(chunk)
        self.delivered += n
        self.changed = True
        if not live:
            return
        age = max(0.0, now - chunk[0].published_at)
        self.latency_counts[bisect_left(LATENCY_BUCKETS, age)] += n
        self.latency_sum += age * n
        if self.block_cursors:
            self.wake_publishers()

    def statistics(self) -> NamespaceStatistics:
        """Its figures, as of the last :meth:`settle_figures`."""
        cumulative, running = [], 0
        for count in self.latency_counts[:-1]:
            running += count
            cumulative.append(running)
        total = running + self.latency_counts[-1]
        log = self.log
        return NamespaceStatistics(
            name=self.name,
            epoch=self.epoch,
            deduplicated=self.deduplicated,
            available=self.available,
            published=self.published,
            delivered=self.delivered,
            dropped=dict(self.dropped),
            evicted=dict(self.evicted),
            subscribers=len(self.cursors),
            head=log.head,
            oldest=log.first,
            retained_events=log.head - log.first + 1,
            retained_bytes=log.retained_bytes,
            max_lag=self.max_lag,
            latency=LatencyStatistics(tuple(cumulative), total, self.latency_sum),
        )

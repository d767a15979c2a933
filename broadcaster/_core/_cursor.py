"""A subscription's position in one namespace, with its bounded buffer.

The namespace log is shared: publishing appends once, whatever the number of
subscribers. Each cursor *settles* the events published since it last looked (on
read, before a blocking publish, and in the hub's sweeps): it filters them and hands
them to its overflow policy (:mod:`._overflow`), which buffers what fits and decides
about the rest. Room in the buffer only appears when the subscriber reads, so settling
lazily decides exactly as an eager per-subscriber queue would, at a cost the publisher
never pays.

A cursor writes into nothing but itself: it keeps its notices, counts what it dropped
(``dropped``) and remembers that its policy gave up on the subscriber (``slow``); whoever
settles it reads those. It reaches its subscription and its namespace through two small
protocols, :class:`Reader` and :class:`Source`, and tells its namespace only what the
namespace counts (drops by reason, deliveries, retries waiting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ._filters import Key, Matcher
from ._log import EventLog
from ._overflow import OverflowPolicy
from ._policy import Policy
from ._scan import Clock
from ._types import (
    AvailabilityNotice,
    DropNotice,
    DropReason,
    EndReason,
    Event,
    ResyncNotice,
    ResyncReason,
)

__all__ = ["Cursor", "Notice", "Reader", "Source", "evict_slow"]

Notice = DropNotice | ResyncNotice | AvailabilityNotice

#: events a settle reads at most from a durable log's older history (a subscriber far
#: behind): the rest at its next read, after the other tasks ran
_SETTLE_READ_MAX = 4096


class Reader(Protocol):
    """The subscription a cursor reads for, as the cursor and its owners see it."""

    @property
    def namespaces(self) -> tuple[str, ...] | None:
        """The namespaces it named (None: every namespace)."""
        ...

    @property
    def keys(self) -> frozenset[Key] | None:
        """What every event its filter matches has one of (None: not known; see
        :mod:`._topics`)."""
        ...

    @property
    def matcher(self) -> Matcher | None: ...

    def match_budget(self) -> tuple[Clock, float]:
        """The clock and the seconds of it one read may spend matching."""
        ...

    def now(self) -> float: ...

    def wake(self) -> None:
        """Wake it if it waits for events (to read again)."""
        ...

    def touch(self, cursor: Cursor[Any]) -> None:
        """*cursor* was given something to deliver other than by an append to its
        namespace: its next read must look at it."""
        ...

    def end(self, reason: EndReason, message: str) -> None:
        """End the subscription from the hub's side."""
        ...


class Source(Protocol):
    """The namespace a cursor reads, as the cursor sees it."""

    @property
    def name(self) -> str: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def epoch(self) -> str:
        """The incarnation of the log its sequences belong to."""
        ...

    @property
    def available(self) -> bool:
        """Whether its (durable) log can store and feed events now."""
        ...

    @property
    def unavailable_reason(self) -> str: ...

    def listing(self, keys: frozenset[Key], start: int, stop: int
                ) -> tuple[list[int] | None, int]: ...

    def lost_since(self, keys: frozenset[Key], start: int) -> bool: ...

    def filter(self, matcher: Matcher, start: int, stop: int, clock: Clock | None = None,
               budget: float = 0.0) -> tuple[list[Event], int]: ...

    def count_drop(self, reason: DropReason, count: int) -> None: ...

    def delivered_chunk(self, chunk: Sequence[Event], now: float, live: bool = True) -> None: ...

    def note_retries(self) -> None:
        """Some cursor has events waiting for a retry (the sweep must come)."""
        ...


#: The namespace type a cursor's owners know it by (the cursor itself needs a Source).
S = TypeVar("S", bound=Source)


class Cursor(Generic[S]):
    """Where one subscription stands in one namespace.

    :ivar overflow: what it does when its buffer is full (derived from its policy)
    :ivar dropped: events it dropped, reported or to be reported to the subscriber
    :ivar slow: 0, or the events pending when its policy gave up on the subscriber
        (it must be evicted: ``slow_consumer``); once set, it stays set
    """

    __slots__ = (
        "accepted_end", "behind", "buf", "buf_bytes", "dropped", "next", "notices", "ns",
        "overflow", "replaying", "retries", "slow", "start_after", "sub",
    )

    def __init__(self, sub: Reader, ns: S, overflow: OverflowPolicy) -> None:
        self.sub = sub
        self.ns = ns
        self.overflow = overflow
        self.replaying = False
        self.next = ns.log.head + 1  # replay position (while replaying)
        self.accepted_end = self.next  # first sequence not yet settled (live)
        self.start_after = self.next - 1  # delivery starts after this sequence
        # Containers exist only while they hold something: an idle cursor is one small
        # object (a hub may hold hundreds of thousands), not three empty containers.
        self.buf: deque[Event] | tuple[()] = ()
        self.buf_bytes = 0
        self.retries: deque[tuple[Event, float]] | tuple[()] = ()  # (event, deadline)
        self.notices: list[Notice] | tuple[()] = ()
        self.dropped = 0
        self.slow = 0
        # the filter's CPU budget ran out before the head: settle or replay goes on at
        # the next read, after other tasks ran (the subscription is woken for it)
        self.behind = False

    @property
    def policy(self) -> Policy:
        """The policy it applies (the subscription's, cut to the namespace's limits)."""
        return self.overflow.policy

    # -- start -------------------------------------------------------------------

    def start(self, since: int | None, epoch: str | None) -> None:
        """Position the cursor: live from now, or replaying from ``since + 1``.

        *epoch* is the incarnation *since* belongs to (None: unknown, trusted); another
        one than the namespace's gets a ``ResyncNotice(epoch_changed)`` and replay from
        the oldest retained event."""
        ns = self.ns
        if not ns.available:
            self._notices().append(AvailabilityNotice(ns.name, False, ns.unavailable_reason))
        if since is None:
            return
        log, current = ns.log, ns.epoch
        reason: ResyncReason | None = None
        if epoch and epoch != current:
            reason = ResyncReason.EPOCH_CHANGED
        elif since > log.head:
            reason = ResyncReason.AHEAD
        elif since + 1 < log.first:
            reason = ResyncReason.COMPACTED
        if reason is not None:
            self._notices().append(ResyncNotice(ns.name, since, log.first, reason, current))
            self.next = log.first
        else:
            self.next = since + 1
        self.replaying = self.next <= log.head
        self.accepted_end = self.next
        self.start_after = self.next - 1

    def restart(self) -> None:
        """The namespace's log began a new incarnation: what is buffered belongs to the
        old one and goes; tell the subscriber and replay the new one from its oldest
        event."""
        ns, log = self.ns, self.ns.log
        position = self.next - 1 if self.replaying else self.accepted_end - 1
        self.buf = self.retries = ()
        self.buf_bytes = 0
        self.behind = False
        self._notices().append(ResyncNotice(ns.name, max(position, 0), log.first,
                                            ResyncReason.EPOCH_CHANGED, ns.epoch))
        self.next = log.first
        self.replaying = self.next <= log.head
        self.accepted_end = self.next
        self.start_after = self.next - 1
        self.sub.touch(self)

    def tell(self, notice: AvailabilityNotice) -> None:
        """Queue *notice* for the subscriber, before its next event."""
        self._notices().append(notice)
        self.sub.touch(self)

    # -- settling live events -------------------------------------------------------

    def settle(self, now: float, budgeted: bool = True) -> None:
        """Hand to the overflow policy every event published since the last settle
        (with a filter and *budgeted*: those its CPU budget had time to match). What it
        dropped is in ``notices`` and ``dropped``; if it gave up on the subscriber,
        ``slow`` is set."""
        if self.replaying:
            return
        if self.retries:
            self.overflow.offer(self, now)
        log = self.ns.log
        head = log.head
        start = self.accepted_end
        if start > head:
            self.behind = False
            return
        keys = self.sub.keys  # what every event its filter matches has one of
        if keys is not None and start < log.first and not self.ns.lost_since(keys, start):
            start = log.first  # retention took only events it could not match
        if start < log.first:
            self._lost_to_retention(start, log.first - 1)
            start = log.first
        self.accepted_end = head + 1
        self.behind = False
        matcher = self.sub.matcher
        if matcher is None:
            events: Sequence[Event] = log.read(start, head + 1)
            if len(events) <= head - start:  # a durable log's older history: in parts
                events = self._read_on(events, start, head + 1)
        else:
            listed: list[Event] = []
            if keys is not None and start <= head:
                listed, start = self._read_listed(keys, matcher, start, head + 1)
            if start <= head and self.accepted_end > head:
                clock, budget = self.sub.match_budget() if budgeted else (None, 0.0)
                more, end = self.ns.filter(matcher, start, head + 1, clock, budget)  # shared
                self.accepted_end = end
                # more to match, unless the log has nothing more to give without waiting
                # (then its history_loaded wakes the subscription)
                self.behind = end <= head and bool(log.read(end, end + 1))
                events = listed + more if listed else more
            else:
                events = listed
        if events:
            self.overflow.admit(self, events, now)

    def _read_listed(self, keys: frozenset[Key], matcher: Matcher, start: int, stop: int
                     ) -> tuple[list[Event], int]:
        """Match the events of ``[start, stop)`` that the namespace's index lists for
        *keys* (skipping the rest unread); return them and where reading must go on
        (*stop* if the index knew the whole range). Stops early, with ``accepted_end``
        set, at :data:`_SETTLE_READ_MAX` events (``behind``) or at one the log cannot
        give without waiting (its history_loaded wakes the subscription)."""
        seqs, known = self.ns.listing(keys, start, stop)
        if seqs is None:
            return [], start
        log = self.ns.log
        out: list[Event] = []
        for i, seq in enumerate(seqs):
            if i == _SETTLE_READ_MAX:
                self.accepted_end, self.behind = seq, True
                return out, seq
            got = log.read(seq, seq + 1)
            if not got:
                self.accepted_end = seq
                return out, seq
            if matcher(got[0]):
                out.append(got[0])
        return out, known

    def _read_on(self, events: Sequence[Event], start: int, stop: int) -> Sequence[Event]:
        """*events*, a prefix of ``[start, stop)`` that a durable log gave, with what it
        gives without waiting after them (up to :data:`_SETTLE_READ_MAX`); sets
        ``accepted_end`` after the last one. A part read from a log that gives nothing
        more now is continued when it has loaded more (``history_loaded`` wakes the
        subscription); one stopped at the bound, at the next read (``behind``)."""
        log, out = self.ns.log, list(events)
        end = out[-1].sequence + 1 if out else start
        while end < stop and len(out) < _SETTLE_READ_MAX:
            more = log.read(end, stop)
            if not more:
                break
            out.extend(more)
            end = more[-1].sequence + 1
        self.accepted_end = end
        self.behind = end < stop and len(out) >= _SETTLE_READ_MAX
        return out

    # -- the buffer, as its overflow policy acts on it (the Buffer protocol) -----------

    def fit(self, events: Sequence[Event]) -> int:
        """How many of *events* fit into the buffer now."""
        policy = self.overflow.policy
        fit = min(len(events), max(0, policy.max_events - len(self.buf)))
        if policy.max_bytes and fit:
            room = policy.max_bytes - self.buf_bytes
            for i in range(fit):
                room -= events[i].size
                if room < 0:
                    return i
        return fit

    def put(self, events: Sequence[Event]) -> bool:
        buf = self.buf
        if not isinstance(buf, deque):
            buf = self.buf = deque()
        buf.extend(events)
        policy = self.overflow.policy
        if policy.max_bytes:
            self.buf_bytes += sum(e.size for e in events)
            if self.buf_bytes > policy.max_bytes:
                return True
        return len(buf) > policy.max_events

    def shed(self) -> list[Event]:
        policy, buf = self.overflow.policy, self._buffer()
        excess = len(buf) - policy.max_events
        shed: list[Event] = []
        if excess > 0:
            shed = [buf.popleft() for _ in range(excess)]
        if policy.max_bytes:
            self.buf_bytes -= sum(e.size for e in shed)
            while buf and self.buf_bytes > policy.max_bytes:
                event = buf.popleft()
                self.buf_bytes -= event.size
                shed.append(event)
        return shed

    def drop(self, events: Sequence[Event], reason: DropReason) -> None:
        first, last = events[0].sequence, events[-1].sequence
        if last - first + 1 == len(events) or self.sub.matcher is not None:
            self._record(len(events), first, last, reason)
            return
        # Not contiguous, though nothing was filtered out (retry: what expires together
        # may straddle events dropped before, reported in another notice): one notice
        # per run, so that a notice's range holds exactly what it reports.
        start = 0
        for i in range(1, len(events) + 1):
            if i == len(events) or events[i].sequence != events[i - 1].sequence + 1:
                self._record(i - start, events[start].sequence, events[i - 1].sequence,
                             reason)
                start = i

    def refuse(self, events: Sequence[Event]) -> None:
        self.slow = self.slow or len(self.buf) + len(events)

    def retry_queue(self) -> deque[tuple[Event, float]]:
        retries = self.retries
        if not isinstance(retries, deque):
            retries = self.retries = deque()
        self.ns.note_retries()  # the sweep expires them even if nobody reads
        return retries

    def slow_message(self) -> str:
        """Why the subscriber is evicted (once ``slow`` is set)."""
        return (f"namespace {self.ns.name!r}: {self.slow} events pending exceed the "
                "disconnect bound")

    # -- recording drops --------------------------------------------------------------

    def _lost_to_retention(self, first: int, last: int) -> None:
        # The events are gone, so a filter cannot be applied: every position counts.
        self._record(last - first + 1, first, last, DropReason.RETENTION)

    def _record(self, count: int, first: int, last: int, reason: DropReason) -> None:
        notices = self._notices()
        self.ns.count_drop(reason, count)
        self.dropped += count
        if notices:
            prev = notices[-1]
            if (
                isinstance(prev, DropNotice)
                and prev.reason is reason
                and (first == prev.last_sequence + 1  # adjacent; or only filtered between
                     or (self.sub.matcher is not None and prev.last_sequence < first
                         and not self._holds_between(prev.last_sequence, first)))
            ):
                notices[-1] = DropNotice(
                    prev.namespace, prev.count + count, prev.first_sequence, last, reason
                )
                return
        notices.append(DropNotice(self.ns.name, count, first, last, reason))

    def _holds_between(self, low: int, high: int) -> bool:
        """Whether an event it still holds (buffered, or waiting for a retry) may lie
        between *low* and *high*: then a notice must not span the gap, since that event
        may yet be delivered. Held events are in sequence order, buffer then retry
        queue, so their ends tell (conservatively: a straddling gap says yes). Without
        a filter, notices only merge when adjacent: a gap is never filtered out."""
        buf, retries = self.buf, self.retries
        ends: list[int] = []
        if isinstance(buf, deque) and buf:
            ends += (buf[0].sequence, buf[-1].sequence)
        if isinstance(retries, deque) and retries:
            ends += (retries[0][0].sequence, retries[-1][0].sequence)
        return bool(ends) and min(ends) < high and max(ends) > low

    # -- reading ------------------------------------------------------------------------

    def room(self, now: float) -> int:
        """How many live events fit now (for blocking publishers)."""
        policy = self.overflow.policy
        if self.replaying:
            return policy.max_events
        self.settle(now, budgeted=False)  # the publisher must know the whole truth
        if policy.max_bytes and self.buf_bytes >= policy.max_bytes:
            return 0
        return max(0, policy.max_events - len(self.buf))

    def take(self, limit: int, out: list[object], now: float) -> int:
        """Move notices and up to *limit* events into *out*; return the events moved."""
        if self.replaying:
            return self._take_replay(limit, out)
        if not (self.buf or self.retries or self.notices or self.slow
                or self.sub.matcher is not None):
            taken = self._take_through(limit, out)
            if taken >= 0:
                return taken
        self.settle(now)
        return 0 if self.slow else self._take_live(limit, out)

    def _take_through(self, limit: int, out: list[object]) -> int:
        """What :meth:`settle` then :meth:`_take_live` do for the common case, without
        the buffer: an unfiltered cursor with nothing buffered, waiting or to tell, whose
        new events all fit its policy and *limit*, takes them from the log straight into
        *out*. Returns -1 (having changed nothing) when that case does not hold."""
        log = self.ns.log
        head, start = log.head, self.accepted_end
        if start > head:
            self.behind = False
            return 0
        n = head + 1 - start
        policy = self.overflow.policy
        if n > limit or n > policy.max_events or start < log.first:
            return -1
        events = log.read(start, head + 1)
        if len(events) != n or (policy.max_bytes
                                and sum(e.size for e in events) > policy.max_bytes):
            return -1  # a durable log's older history comes in parts; or too big
        self.accepted_end = head + 1
        self.behind = False
        out.extend(events)
        self.ns.delivered_chunk(events, self.sub.now())
        return n

    def flush_notices(self, out: list[object]) -> None:
        if self.notices:
            out.extend(self.notices)
            self.notices = ()

    def _take_live(self, limit: int, out: list[object]) -> int:
        buf = self.buf
        self.flush_notices(out)
        if not buf:
            return 0
        if len(buf) <= limit:
            chunk = list(buf)
            self.buf = ()
            self.buf_bytes = 0
        else:
            popleft = self._buffer().popleft
            chunk = [popleft() for _ in range(limit)]
            if self.overflow.policy.max_bytes:
                self.buf_bytes -= sum(e.size for e in chunk)
        out.extend(chunk)
        if self.retries:
            self.overflow.offer(self, self.sub.now())
        self.ns.delivered_chunk(chunk, self.sub.now())
        return len(chunk)

    def _take_replay(self, limit: int, out: list[object]) -> int:
        log = self.ns.log
        if self.next < log.first:
            self._lost_to_retention(self.next, log.first - 1)
            self.next = log.first
        self.flush_notices(out)
        matcher = self.sub.matcher
        chunk: list[Event] = []
        clock, budget = self.sub.match_budget() if matcher is not None else (None, 0.0)
        deadline = clock() + budget if clock is not None else 0.0
        step = max(limit, 256) if matcher is None else 16
        self.behind = False
        while len(chunk) < limit and self.next <= log.head:
            if clock is not None and step > 16 and clock() >= deadline:
                self.behind = True  # the filter's budget ran out: the rest at the next read
                break
            events = log.read(self.next, min(self.next + step, log.head + 1))
            if not events:
                break
            if matcher is None:
                part = list(events[: limit - len(chunk)])
                chunk.extend(part)
                self.next += len(part)
                continue
            for event in events:
                self.next = event.sequence + 1
                if matcher(event):
                    chunk.append(event)
                    if len(chunk) >= limit:
                        break
            step = min(step * 2, 1024)
        if self.next > log.head:
            self.replaying = False
            self.accepted_end = self.next
        if chunk:
            out.extend(chunk)
            self.ns.delivered_chunk(chunk, self.sub.now(), live=False)
        return len(chunk)

    def _buffer(self) -> deque[Event]:
        buf = self.buf
        if not isinstance(buf, deque):
            buf = self.buf = deque()
        return buf

    def _notices(self) -> list[Notice]:
        notices = self.notices
        if not isinstance(notices, list):
            notices = self.notices = []
        return notices

    def discard(self) -> None:
        """Forget what is buffered or waiting for a retry (the subscriber was evicted)."""
        self.buf = self.retries = ()
        self.buf_bytes = 0

    def drained(self, now: float) -> bool:
        """Whether everything published has been delivered or reported to the subscriber
        (nothing buffered, waiting for a retry, to replay, or to tell)."""
        self.settle(now)
        return not (self.buf or self.retries or self.notices or self.replaying or self.slow
                    or self.accepted_end <= self.ns.log.head)

    def lag(self, now: float) -> int:
        """Events published that it has not delivered (as :meth:`pending`), for a
        scrape: settled first if a drop may be due (its unsettled events may not fit its
        buffer, retention overtook it, retries wait), so that the scrape counts it. An
        idle cursor is only looked at: with hundreds of thousands of them a scrape costs
        one look at each, not a settle (and a buffer allocated for each)."""
        if self.replaying:
            return self.ns.log.head - self.next + 1
        log, policy = self.ns.log, self.overflow.policy
        unsettled = log.head - self.accepted_end + 1
        if unsettled > 0 and (
            self.accepted_end < log.first or self.retries or policy.max_bytes
            or len(self.buf) + unsettled > policy.max_events
        ):
            self.settle(now)
            unsettled = log.head - self.accepted_end + 1
        return len(self.buf) + len(self.retries) + unsettled

    def pending(self) -> int:
        """Events published that this cursor has neither delivered nor dropped (upper bound)."""
        head = self.ns.log.head
        if self.replaying:
            return head - self.next + 1
        return len(self.buf) + len(self.retries) + head - self.accepted_end + 1


def evict_slow(cursors: Iterable[Cursor[S]]) -> None:
    """End the subscriptions of *cursors*, whose policy gave up on them (``slow``).
    Whoever settles cursors calls this once it is done iterating over them: ending a
    subscription removes its cursors from its namespaces."""
    for cursor in cursors:
        cursor.sub.end(EndReason.SLOW_CONSUMER, cursor.slow_message())

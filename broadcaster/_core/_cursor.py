"""A subscription's position in one namespace, with its bounded buffer.

The namespace log is shared: publishing appends once, whatever the number of
subscribers. Each cursor *settles* the events published since it last looked (on
read, before a blocking publish, and in the hub's sweeps): it filters them and admits
them into its bounded buffer under its policy, recording every drop. Room in the
buffer only appears when the subscriber reads, so settling lazily decides exactly as an
eager per-subscriber queue would, at a cost the publisher never pays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._policy import Policy, PolicyKind
from ._types import (
    AvailabilityNotice,
    DropNotice,
    DropReason,
    Event,
    ResyncNotice,
    ResyncReason,
)

if TYPE_CHECKING:
    from ._namespace import NamespaceState
    from ._subscription import Subscription

__all__ = ["Cursor"]

Notice = DropNotice | ResyncNotice | AvailabilityNotice

#: events a settle reads at most from a durable log's older history (a subscriber far
#: behind): the rest at its next read, after the other tasks ran
_SETTLE_READ_MAX = 4096

_OVERFLOW_REASON = {
    PolicyKind.DROP_NEWEST: DropReason.OVERFLOW_NEWEST,
    PolicyKind.DROP_OLDEST: DropReason.OVERFLOW_OLDEST,
    PolicyKind.RETRY: DropReason.RETRY_EXHAUSTED,
}


class Cursor:
    """Where one subscription stands in one namespace."""

    __slots__ = (
        "accepted_end", "behind", "buf", "buf_bytes", "mode", "next", "notices", "ns",
        "overflow", "policy", "replaying", "start_after", "sub",
    )

    def __init__(self, sub: Subscription, ns: NamespaceState, policy: Policy) -> None:
        self.sub = sub
        self.ns = ns
        self.policy = policy
        # Block subscribers fall back to another policy once a publisher gave up waiting.
        self.mode = policy.fallback if policy.kind is PolicyKind.BLOCK else policy.kind
        self.replaying = False
        self.next = ns.log.head + 1  # replay position (while replaying)
        self.accepted_end = self.next  # first sequence not yet settled (live)
        self.start_after = self.next - 1  # delivery starts after this sequence
        # Containers exist only while they hold something: an idle cursor is one small
        # object (a hub may hold hundreds of thousands), not three empty containers.
        self.buf: deque[Event] | tuple[()] = ()
        self.buf_bytes = 0
        self.overflow: deque[tuple[Event, float]] | tuple[()] = ()  # retry: (event, deadline)
        self.notices: list[Notice] | tuple[()] = ()
        # the filter's CPU budget ran out before the head: settle or replay goes on at
        # the next read, after other tasks ran (the subscription is woken for it)
        self.behind = False

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
        self.buf = self.overflow = ()
        self.buf_bytes = 0
        self.behind = False
        self._notices().append(ResyncNotice(ns.name, max(position, 0), log.first,
                                            ResyncReason.EPOCH_CHANGED, ns.epoch))
        self.next = log.first
        self.replaying = self.next <= log.head
        self.accepted_end = self.next
        self.start_after = self.next - 1

    def tell(self, notice: AvailabilityNotice) -> None:
        """Queue *notice* for the subscriber, before its next event."""
        self._notices().append(notice)

    # -- settling live events -------------------------------------------------------

    def settle(self, now: float, budgeted: bool = True) -> None:
        """Admit or drop, under the policy, every event published since the last settle
        (with a filter and *budgeted*: those its CPU budget had time to match)."""
        if self.replaying:
            return
        if self.overflow:
            self._retry_admit(now)
        log = self.ns.log
        head = log.head
        start = self.accepted_end
        if start > head:
            self.behind = False
            return
        topics = self.sub.topics
        if topics is not None:  # the filter matches these topics only
            if self.ns.quiet_since(topics, start):
                self.accepted_end = head + 1  # nothing it could match: skip, unread
                self.behind = False
                return
            if start < log.first and not self.ns.lost_since(topics, start):
                start = log.first  # retention took only events it could not match
        if start < log.first:
            self._lost_to_retention(start, log.first - 1)
            start = log.first
        self.accepted_end = head + 1
        matcher = self.sub.matcher
        if matcher is None:
            events = log.read(start, head + 1)
            if len(events) <= head - start:  # a durable log's older history: in parts
                events = self._read_on(events, start, head + 1)
        else:
            clock, budget = self.sub.match_budget() if budgeted else (None, 0.0)
            events, end = self.ns.filter(matcher, start, head + 1, clock, budget)  # shared
            self.accepted_end = end
            # more to match, unless the log has nothing more to give without waiting
            # (then its history_loaded wakes the subscription)
            self.behind = end <= head and bool(log.read(end, end + 1))
        if events:
            self._admit(events, now)

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

    def _admit(self, events: Sequence[Event], now: float) -> None:
        mode, policy, buf = self.mode, self.policy, self._buffer()
        if mode is PolicyKind.DROP_OLDEST:
            buf.extend(events)
            if policy.max_bytes:
                self.buf_bytes += sum(e.size for e in events)
            self._trim_oldest()
            return
        fit = self._fit(events)
        if fit:
            buf.extend(events[:fit])
            if policy.max_bytes:
                self.buf_bytes += sum(e.size for e in events[:fit])
        rest = events[fit:]
        if not rest:
            return
        if mode is PolicyKind.DISCONNECT:
            self.sub.evict_slow(self.ns.name, len(buf) + len(rest))
        elif mode is PolicyKind.RETRY:
            self._retry_queue(rest, now)
        else:
            self._drop(rest, self._reason())

    def _fit(self, events: Sequence[Event]) -> int:
        """How many of *events* fit into the buffer now."""
        policy = self.policy
        fit = min(len(events), max(0, policy.max_events - len(self.buf)))
        if policy.max_bytes and fit:
            room = policy.max_bytes - self.buf_bytes
            for i in range(fit):
                room -= events[i].size
                if room < 0:
                    return i
        return fit

    def _trim_oldest(self) -> None:
        policy, buf = self.policy, self._buffer()
        excess = len(buf) - policy.max_events
        dropped: list[Event] = []
        if excess > 0:
            dropped = [buf.popleft() for _ in range(excess)]
        if policy.max_bytes:
            self.buf_bytes -= sum(e.size for e in dropped)
            while buf and self.buf_bytes > policy.max_bytes:
                event = buf.popleft()
                self.buf_bytes -= event.size
                dropped.append(event)
        if dropped:
            self._drop(dropped, self._reason())

    def _retry_queue(self, events: Sequence[Event], now: float) -> None:
        self.ns.retrying = True
        policy, overflow = self.policy, self._overflow()
        last = overflow[-1][1] if overflow else 0.0
        rejected: list[Event] = []
        for event in events:
            if len(overflow) >= policy.max_events:
                rejected.append(event)
                continue
            last = max(last, event.published_at + policy.retry_delays(self.sub.random()))
            overflow.append((event, last))
        if rejected:
            self._drop(rejected, DropReason.RETRY_EXHAUSTED)

    def _retry_admit(self, now: float) -> None:
        overflow, expired = self._overflow(), []
        while overflow and overflow[0][1] < now:
            expired.append(overflow.popleft()[0])
        if expired:
            self._drop(expired, DropReason.RETRY_EXHAUSTED)
        if overflow:
            waiting = [event for event, _ in overflow]
            fit = self._fit(waiting)
            for _ in range(fit):
                event = overflow.popleft()[0]
                self._buffer().append(event)
                self.buf_bytes += event.size if self.policy.max_bytes else 0

    def _reason(self) -> DropReason:
        if self.policy.kind is PolicyKind.BLOCK:
            return DropReason.BLOCK_TIMEOUT
        return _OVERFLOW_REASON[self.mode]

    # -- recording drops --------------------------------------------------------------

    def _drop(self, events: Sequence[Event], reason: DropReason) -> None:
        self._record(len(events), events[0].sequence, events[-1].sequence, reason)

    def _lost_to_retention(self, first: int, last: int) -> None:
        # The events are gone, so a filter cannot be applied: every position counts.
        self._record(last - first + 1, first, last, DropReason.RETENTION)

    def _record(self, count: int, first: int, last: int, reason: DropReason) -> None:
        notices = self._notices()
        if notices:
            prev = notices[-1]
            if (
                isinstance(prev, DropNotice)
                and prev.reason is reason
                and prev.last_sequence < first
            ):
                notices[-1] = DropNotice(
                    prev.namespace, prev.count + count, prev.first_sequence, last, reason
                )
                self.ns.count_drop(reason, count)
                self.sub.dropped += count
                return
        notices.append(DropNotice(self.ns.name, count, first, last, reason))
        self.ns.count_drop(reason, count)
        self.sub.dropped += count

    # -- reading ------------------------------------------------------------------------

    def room(self, now: float) -> int:
        """How many live events fit now (for blocking publishers)."""
        policy = self.policy
        if self.replaying:
            return policy.max_events
        self.settle(now, budgeted=False)  # the publisher must know the whole truth
        if policy.max_bytes and self.buf_bytes >= policy.max_bytes:
            return 0
        return max(0, policy.max_events - len(self.buf))

    def take(self, limit: int, out: list[object], now: float) -> int:
        """Move notices and up to *limit* events into *out*; return the events moved."""
        if self.replaying:
            taken = self._take_replay(limit, out)
        else:
            self.settle(now)
            taken = self._take_live(limit, out)
        return taken

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
            if self.policy.max_bytes:
                self.buf_bytes -= sum(e.size for e in chunk)
        out.extend(chunk)
        if self.overflow:
            self._retry_admit(self.sub.now())
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

    def _overflow(self) -> deque[tuple[Event, float]]:
        overflow = self.overflow
        if not isinstance(overflow, deque):
            overflow = self.overflow = deque()
        return overflow

    def _notices(self) -> list[Notice]:
        notices = self.notices
        if not isinstance(notices, list):
            notices = self.notices = []
        return notices

    def discard(self) -> None:
        """Forget what is buffered or waiting for a retry (the subscriber was evicted)."""
        self.buf = self.overflow = ()
        self.buf_bytes = 0

    def drained(self, now: float) -> bool:
        """Whether everything published has been delivered or reported to the subscriber
        (nothing buffered, waiting for a retry, to replay, or to tell)."""
        self.settle(now)
        return not (self.buf or self.overflow or self.notices or self.replaying
                    or self.accepted_end <= self.ns.log.head)

    def pending(self) -> int:
        """Events published that this cursor has neither delivered nor dropped (upper bound)."""
        head = self.ns.log.head
        if self.replaying:
            return head - self.next + 1
        return len(self.buf) + len(self.overflow) + head - self.accepted_end + 1

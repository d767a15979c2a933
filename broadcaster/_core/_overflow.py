"""What a subscription does with events its bounded buffer cannot take.

Users describe a policy with :class:`Policy` (a frozen record: a kind and its
parameters); the core derives one of the small objects below from it
(:func:`overflow_policy`) and each cursor asks that object what to do. Every decision
about a full buffer is here, one class per policy, behind one protocol,
:class:`OverflowPolicy`:

- :meth:`~OverflowPolicy.admit` takes the events published since the cursor last
  looked: what fits goes into the buffer, the rest is handed to
  :meth:`~OverflowPolicy.full`, which drops (and reports), makes the events wait, or
  refuses them (the subscriber is over its bound and must go);
- :meth:`~OverflowPolicy.offer` offers waiting events again after a read;
- ``sweep`` says whether the hub must settle the cursor periodically even if nobody
  reads (to evict, or to expire waiting events on time), ``blocks`` whether publishers
  wait for room.

``block`` and ``retry`` wrap a fallback, as docker/go-events' ``Queue`` and
``RetryingSink`` wrap a sink: :class:`Block` only makes publishers wait (the
namespace's gate does the waiting); whatever still does not fit when they stop waiting
is its fallback's to decide, reported as ``block_timeout``. :class:`Retry` keeps events
that found the buffer full waiting with deadlines; an event whose deadline passes, or
that finds the retry queue full, is its fallback's, which drops it as
``retry_exhausted``.

A policy holds no state of its own (the buffer, the retry queue and the record of drops
are the cursor's, behind :class:`Buffer`), so one object serves every cursor of a
subscription.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from ._policy import Policy, PolicyKind
from ._types import DropReason, Event

__all__ = [
    "Block",
    "Buffer",
    "Disconnect",
    "DropNewest",
    "DropOldest",
    "OverflowPolicy",
    "Retry",
    "overflow_policy",
]


class Buffer(Protocol):
    """What a policy acts on: one cursor's bounded buffer, its retry queue and its
    record of drops (:class:`~broadcaster._core._cursor.Cursor` is one)."""

    def fit(self, events: Sequence[Event]) -> int:
        """How many of *events*, from the first, fit into the buffer now."""
        ...

    def put(self, events: Sequence[Event]) -> bool:
        """Append *events* to the buffer (they fit, unless :meth:`shed` follows); return
        whether it is now over its bounds."""
        ...

    def shed(self) -> list[Event]:
        """Remove the oldest buffered events until the buffer is within its bounds;
        return them."""
        ...

    def drop(self, events: Sequence[Event], reason: DropReason) -> None:
        """Record *events* (in order, non-empty) as dropped: counted, and reported to
        the subscriber with a notice carrying their exact range."""
        ...

    def refuse(self, events: Sequence[Event]) -> None:
        """The subscriber cannot take *events* and must go (``slow_consumer``)."""
        ...

    def retry_queue(self) -> deque[tuple[Event, float]]:
        """The events waiting for another attempt, each with its deadline, oldest
        first (created on first use)."""
        ...


class OverflowPolicy(Protocol):
    """What a subscription does when its buffer is full."""

    @property
    def policy(self) -> Policy:
        """The :class:`Policy` it acts on (bounds and parameters)."""
        ...

    @property
    def sweep(self) -> bool:
        """Whether its cursors must be settled periodically, even if nobody reads."""
        ...

    @property
    def blocks(self) -> bool:
        """Whether publishers wait for room (at most ``policy.block_timeout``)."""
        ...

    def admit(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        """Take *events*, just published (in order, non-empty): buffer what fits and
        decide about the rest."""
        ...

    def full(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        """Decide about *events*, which found the buffer full."""
        ...

    def offer(self, buffer: Buffer, now: float) -> None:
        """Offer waiting events again (called when some wait, before and after reads)."""
        ...


class _Policy:
    """Shared by the policies: buffer what fits, hand the rest to :meth:`full`."""

    __slots__ = ("blocks", "policy", "reason", "sweep")

    # each subclass sets: policy, reason (of the drops it decides), sweep, blocks
    policy: Policy
    reason: DropReason
    sweep: bool
    blocks: bool

    def admit(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        fit = buffer.fit(events)
        if fit == len(events):
            buffer.put(events)
            return
        if fit:
            buffer.put(events[:fit])
        self.full(buffer, events[fit:], now)

    def full(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        raise NotImplementedError

    def offer(self, buffer: Buffer, now: float) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r})"


class DropNewest(_Policy):
    """The arriving events that do not fit are dropped."""

    __slots__ = ()

    def __init__(self, policy: Policy, reason: DropReason = DropReason.OVERFLOW_NEWEST) -> None:
        self.policy, self.reason, self.sweep, self.blocks = policy, reason, False, False

    def full(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        buffer.drop(events, self.reason)


class DropOldest(_Policy):
    """The oldest buffered events make room for the arriving ones."""

    __slots__ = ()

    def __init__(self, policy: Policy, reason: DropReason = DropReason.OVERFLOW_OLDEST) -> None:
        self.policy, self.reason, self.sweep, self.blocks = policy, reason, False, False

    def admit(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        if buffer.put(events) and (shed := buffer.shed()):
            buffer.drop(shed, self.reason)

    full = admit  # the same: whatever fits, the newest stay


class Disconnect(_Policy):
    """A subscriber that overflows its buffer is evicted (as NATS and Redis do)."""

    __slots__ = ()

    def __init__(self, policy: Policy) -> None:
        # swept: evicted within overflow_check_interval, even if it never reads again
        self.policy, self.reason, self.sweep, self.blocks = (
            policy, DropReason.OVERFLOW_NEWEST, True, False)  # it never drops

    def full(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        buffer.refuse(events)


class Block:
    """Publishers wait for room; what does not fit once they stopped waiting is the
    fallback's (drop_newest, drop_oldest or disconnect), reported as ``block_timeout``.

    The publisher appends only as many events as every blocking subscriber has room
    for until its wait times out, so whatever reaches :meth:`full` is what it gave up
    waiting for: admitting, deciding and offering are the fallback's own methods (no
    call in between on a cursor's every settle), ``blocks`` is what it adds."""

    __slots__ = ("admit", "blocks", "fallback", "full", "offer", "policy", "reason", "sweep")

    def __init__(self, policy: Policy, fallback: OverflowPolicy) -> None:
        self.policy, self.reason, self.sweep, self.blocks = (
            policy, DropReason.BLOCK_TIMEOUT, fallback.sweep, True)
        self.fallback = fallback
        self.admit = fallback.admit
        self.full = fallback.full
        self.offer = fallback.offer

    def __repr__(self) -> str:
        return f"Block({self.policy!r}, {self.fallback!r})"


class Retry(_Policy):
    """Events that find the buffer full wait (at most ``max_events`` of them) and are
    offered again after each read until their deadline: publish time plus the sum of
    the backoff delays (``Policy.retry_delays``, jittered by *random*). An event whose
    deadline passed, or that finds the retry queue full, is the fallback's.

    Deciding at reads is exact: room only appears when the subscriber reads, so "the
    first attempt after room appeared, unless the deadline passed first" is decided at
    that read, and the hub's sweep expires events of a subscriber that does not read.
    """

    __slots__ = ("fallback", "random")

    def __init__(self, policy: Policy, fallback: OverflowPolicy,
                 random: Callable[[], float]) -> None:
        # swept: waiting events expire on time even if the subscriber never reads again
        self.policy, self.reason, self.sweep, self.blocks = (
            policy, DropReason.RETRY_EXHAUSTED, True, False)
        self.fallback = fallback
        self.random = random

    def full(self, buffer: Buffer, events: Sequence[Event], now: float) -> None:
        policy, queue = self.policy, buffer.retry_queue()
        room = max(0, policy.max_events - len(queue))
        last = queue[-1][1] if queue else 0.0
        for event in events[:room]:
            last = max(last, event.published_at + policy.retry_delays(self.random()))
            queue.append((event, last))
        if len(events) > room:
            self.fallback.full(buffer, events[room:], now)

    def offer(self, buffer: Buffer, now: float) -> None:
        queue, expired = buffer.retry_queue(), []
        while queue and queue[0][1] < now:
            expired.append(queue.popleft()[0])
        if expired:
            self.fallback.full(buffer, expired, now)
        if queue:
            fit = buffer.fit([event for event, _ in queue])
            if fit:
                buffer.put([queue.popleft()[0] for _ in range(fit)])


#: the policies that decide at once, by kind
_IMMEDIATE: dict[PolicyKind, Callable[[Policy], OverflowPolicy]] = {
    PolicyKind.DROP_NEWEST: DropNewest,
    PolicyKind.DROP_OLDEST: DropOldest,
    PolicyKind.DISCONNECT: Disconnect,
}


def overflow_policy(policy: Policy, random: Callable[[], float]) -> OverflowPolicy:
    """The object that acts on *policy* (valid); *random* draws retry jitter."""
    make = _IMMEDIATE.get(policy.kind)
    if make is not None:
        return make(policy)
    if policy.kind is PolicyKind.BLOCK:
        return Block(policy, _block_fallback(policy))
    return Retry(policy, DropNewest(policy, DropReason.RETRY_EXHAUSTED), random)


def _block_fallback(policy: Policy) -> OverflowPolicy:
    """What decides once publishers stopped waiting (drops reported as block_timeout)."""
    if policy.fallback is PolicyKind.DROP_NEWEST:
        return DropNewest(policy, DropReason.BLOCK_TIMEOUT)
    if policy.fallback is PolicyKind.DROP_OLDEST:
        return DropOldest(policy, DropReason.BLOCK_TIMEOUT)
    if policy.fallback is PolicyKind.DISCONNECT:
        return Disconnect(policy)
    raise ValueError(f"{policy.fallback.value} cannot be a fallback")  # validated() refuses it

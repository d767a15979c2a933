"""Limits per identity: what one client may take from the server, whatever its
connections, in one place with one error type (:class:`LimitExceeded`, gRPC
``RESOURCE_EXHAUSTED``) and one counter (``rejected``, by limit; the server exports it
as ``broadcaster_grpc_rejected_total{reason="identity_<limit>"}``).

========================== ==============================================================
limit                      bounds, per identity
========================== ==============================================================
``publish_rate``/``burst`` events published per second (a token bucket; a batch takes
                           one token per event, all or none)
``max_streams``            streaming RPCs open at once (Subscribe, PublishStream,
                           containerd Subscribe)
``max_subscriptions``      subscriptions open at once (each ``Add``, each containerd
                           Subscribe)
``new_namespaces_per_minute`` namespaces the identity creates (by publishing or
                           subscribing) per minute, a token bucket refilled evenly
========================== ==============================================================

Each identity has counters of its own: a noisy identity exhausts its own bucket, never
another's. The clock is passed in (the event loop's, a fake one in tests).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from .._core._errors import QuotaExceeded

__all__ = ["IdentityLimiter", "IdentityLimits", "LimitExceeded", "LimitTable"]


@dataclass(frozen=True, slots=True)
class IdentityLimits:
    """What one identity may take; None is no bound.

    :ivar publish_rate: events per second, sustained
    :ivar publish_burst: events at once above the rate (default: one second's worth,
        at least 1)
    :ivar max_streams: streaming RPCs open at once
    :ivar max_subscriptions: subscriptions open at once
    :ivar new_namespaces_per_minute: namespaces it may create per minute (the whole
        minute's worth at once, then evenly)
    """

    publish_rate: float | None = None
    publish_burst: int | None = None
    max_streams: int | None = None
    max_subscriptions: int | None = None
    new_namespaces_per_minute: int | None = None

    @property
    def burst(self) -> float:
        if self.publish_burst is not None:
            return float(self.publish_burst)
        return float(max(1, math.ceil(self.publish_rate or 1)))

    def merged(self, over: IdentityLimits) -> IdentityLimits:
        """These limits with every bound *over* sets replaced by it (a rate set without
        a burst gets its own default burst, not the one of the limits it overrides)."""
        merged = IdentityLimits(*(
            getattr(over, name) if getattr(over, name) is not None else getattr(self, name)
            for name in IdentityLimits.__slots__))
        if over.publish_rate is not None and over.publish_burst is None:
            merged = replace(merged, publish_burst=None)
        return merged


@dataclass(frozen=True, slots=True)
class LimitTable:
    """Limits by identity: ``"*"`` for every identity, an exact identity's entry over it
    (bound by bound).

    :ivar entries: identity (or ``*``) -> its limits
    """

    entries: Mapping[str, IdentityLimits] = field(default_factory=dict)

    def for_identity(self, identity: str) -> IdentityLimits:
        default = self.entries.get("*", _UNBOUNDED)
        own = self.entries.get(identity)
        return default if own is None else default.merged(own)


_UNBOUNDED = IdentityLimits()


class LimitExceeded(QuotaExceeded):
    """An identity is at one of its limits; the call may succeed later.

    :ivar limit: which one (``publish_rate``, ``max_streams``, ``max_subscriptions``,
        ``new_namespaces_per_minute``)
    :ivar retry_after: seconds after which the same call could pass (rate limits), or
        None
    """

    def __init__(self, limit: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"limits.{limit}", message)
        self.limit = limit
        self.retry_after = retry_after
        #: the ``reason`` it is counted under in ``broadcaster_grpc_rejected_total``
        self.reject_reason = f"identity_{limit}"


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at

    def refill(self, now: float, rate: float, capacity: float) -> None:
        if now > self.at:
            self.tokens = min(capacity, self.tokens + (now - self.at) * rate)
        self.at = now


class _State:
    __slots__ = ("namespaces", "publish", "streams", "subscriptions")

    def __init__(self) -> None:
        self.publish: _Bucket | None = None
        self.namespaces: _Bucket | None = None
        self.streams = 0
        self.subscriptions = 0


class IdentityLimiter:
    """The counters of every identity, checked against the current :class:`LimitTable`.

    :param table: returns the limits in force (the policy file's, reloaded)
    :param clock: monotonic seconds
    """

    def __init__(self, table: Callable[[], LimitTable], clock: Callable[[], float]) -> None:
        self._table = table
        self._clock = clock
        self._states: dict[str, _State] = {}
        #: refusals by limit name
        self.rejected: Counter[str] = Counter()

    def _state(self, identity: str) -> _State:
        state = self._states.get(identity)
        if state is None:
            state = self._states[identity] = _State()
        return state

    def _refuse(self, identity: str, limit: str, message: str,
                retry_after: float | None = None) -> LimitExceeded:
        self.rejected[limit] += 1
        return LimitExceeded(limit, f"identity {identity!r}: {message}", retry_after)

    def _forget_if_idle(self, identity: str, state: _State) -> None:
        """Drop the counters of an identity that holds nothing and whose buckets are
        full: memory stays bounded by the identities currently active."""
        if state.streams or state.subscriptions:
            return
        now, limits = self._clock(), self._table().for_identity(identity)
        for bucket, rate, capacity in (
                (state.publish, limits.publish_rate, limits.burst),
                (state.namespaces, _per_second(limits.new_namespaces_per_minute),
                 float(limits.new_namespaces_per_minute or 0))):
            if bucket is not None and rate is not None:
                bucket.refill(now, rate, capacity)
                if bucket.tokens < capacity:
                    return
        del self._states[identity]

    # -- publishing ---------------------------------------------------------------------

    def take_publish(self, identity: str, events: int) -> None:
        """Take *events* from *identity*'s publish rate, all or none.

        :raises LimitExceeded: ``publish_rate``, with when enough will be there
        """
        limits = self._table().for_identity(identity)
        rate = limits.publish_rate
        if rate is None or events <= 0:
            return
        capacity = limits.burst
        state = self._state(identity)
        now = self._clock()
        bucket = state.publish
        if bucket is None:
            bucket = state.publish = _Bucket(capacity, now)
        bucket.refill(now, rate, capacity)
        if events > capacity:
            raise self._refuse(
                identity, "publish_rate",
                f"a batch of {events} events exceeds the publish burst of {capacity:g} "
                f"(limits publish_rate {rate:g}/s, publish_burst); split the batch")
        if bucket.tokens < events:
            wait = (events - bucket.tokens) / rate
            raise self._refuse(
                identity, "publish_rate",
                f"publish rate of {rate:g} events/s (burst {capacity:g}) exhausted; retry "
                f"in {wait:.3g} s", wait)
        bucket.tokens -= events

    def refund_publish(self, identity: str, events: int) -> None:
        """Give back what :meth:`take_publish` took for events that were not published."""
        state = self._states.get(identity)
        if state is not None and state.publish is not None:
            limits = self._table().for_identity(identity)
            state.publish.tokens = min(limits.burst, state.publish.tokens + events)

    # -- namespaces ---------------------------------------------------------------------

    def check_new_namespace(self, identity: str, namespace: str, count: int = 1) -> None:
        """Whether *identity* may create *count* more namespaces now, *namespace* being
        the last of them (take each with :meth:`created_namespace` once created).

        :raises LimitExceeded: ``new_namespaces_per_minute``, naming *namespace*
        """
        limits = self._table().for_identity(identity)
        per_minute = limits.new_namespaces_per_minute
        if per_minute is None:
            return
        bucket = self._namespace_bucket(identity, per_minute)
        if bucket.tokens < count:
            wait = (count - bucket.tokens) / _per_second(per_minute)  # type: ignore[operator]
            raise self._refuse(
                identity, "new_namespaces_per_minute",
                f"may create {per_minute} namespaces per minute and namespace {namespace!r} "
                f"would be one more; retry in {wait:.3g} s", wait)

    def created_namespace(self, identity: str) -> None:
        """Count a namespace *identity* created."""
        per_minute = self._table().for_identity(identity).new_namespaces_per_minute
        if per_minute is not None:
            bucket = self._namespace_bucket(identity, per_minute)
            bucket.tokens = max(0.0, bucket.tokens - 1)

    def _namespace_bucket(self, identity: str, per_minute: int) -> _Bucket:
        state, now = self._state(identity), self._clock()
        if state.namespaces is None:
            state.namespaces = _Bucket(float(per_minute), now)
        state.namespaces.refill(now, per_minute / 60.0, float(per_minute))
        return state.namespaces

    # -- streams and subscriptions ------------------------------------------------------

    def open_stream(self, identity: str) -> None:
        """Count a streaming RPC of *identity* (release it with :meth:`close_stream`).

        :raises LimitExceeded: ``max_streams``
        """
        limit = self._table().for_identity(identity).max_streams
        state = self._state(identity)
        if limit is not None and state.streams >= limit:
            raise self._refuse(identity, "max_streams",
                               f"has {state.streams} streams open, its limit (max_streams); "
                               "close one or multiplex subscriptions on one stream")
        state.streams += 1

    def close_stream(self, identity: str) -> None:
        state = self._states.get(identity)
        if state is not None and state.streams:
            state.streams -= 1
            self._forget_if_idle(identity, state)

    def add_subscription(self, identity: str) -> None:
        """Count a subscription of *identity* (release it with :meth:`remove_subscription`).

        :raises LimitExceeded: ``max_subscriptions``
        """
        limit = self._table().for_identity(identity).max_subscriptions
        state = self._state(identity)
        if limit is not None and state.subscriptions >= limit:
            raise self._refuse(identity, "max_subscriptions",
                               f"has {state.subscriptions} subscriptions open, its limit "
                               "(max_subscriptions)")
        state.subscriptions += 1

    def remove_subscription(self, identity: str) -> None:
        state = self._states.get(identity)
        if state is not None and state.subscriptions:
            state.subscriptions -= 1
            self._forget_if_idle(identity, state)

    def prune(self) -> None:
        """Forget every identity that holds nothing and whose buckets are full (the
        server calls it periodically)."""
        for identity, state in list(self._states.items()):
            self._forget_if_idle(identity, state)

    # -- figures ------------------------------------------------------------------------

    def usage(self, identity: str) -> tuple[int, int]:
        """(open streams, open subscriptions) of *identity*."""
        state = self._states.get(identity)
        return (0, 0) if state is None else (state.streams, state.subscriptions)

    @property
    def tracked(self) -> int:
        """Identities with counters held."""
        return len(self._states)


def _per_second(per_minute: int | None) -> float | None:
    return None if per_minute is None else per_minute / 60.0

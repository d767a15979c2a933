"""Overflow policies: what happens when a subscriber falls behind its bound."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ._errors import InvalidPolicy

__all__ = ["Policy", "PolicyKind"]

_DEFAULT_MAX_EVENTS = 1024


class PolicyKind(StrEnum):
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"
    RETRY = "retry"
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class Policy:
    """How a subscription's bounded buffer overflows. Build one with the class methods.

    A subscriber's buffer holds the live events it has not yet read, bounded by
    ``max_events`` and ``max_bytes`` (0 = no byte bound). Every drop is counted and
    reported to the subscriber with a :class:`DropNotice`.
    """

    kind: PolicyKind
    max_events: int = _DEFAULT_MAX_EVENTS
    max_bytes: int = 0
    block_timeout: float = 1.0
    fallback: PolicyKind = PolicyKind.DROP_NEWEST
    initial_backoff: float = 0.01
    max_backoff: float = 1.0
    multiplier: float = 2.0
    max_attempts: int = 5
    jitter: float = 0.2

    @classmethod
    def drop_newest(cls, max_events: int = _DEFAULT_MAX_EVENTS, max_bytes: int = 0) -> Policy:
        """Keep what is buffered; an event that finds the buffer full is dropped."""
        return cls(PolicyKind.DROP_NEWEST, max_events, max_bytes).validated()

    @classmethod
    def drop_oldest(cls, max_events: int = _DEFAULT_MAX_EVENTS, max_bytes: int = 0) -> Policy:
        """Keep the newest events; the oldest buffered ones make room."""
        return cls(PolicyKind.DROP_OLDEST, max_events, max_bytes).validated()

    @classmethod
    def block(
        cls,
        max_events: int = _DEFAULT_MAX_EVENTS,
        max_bytes: int = 0,
        *,
        timeout: float = 1.0,
        fallback: PolicyKind | str = PolicyKind.DROP_NEWEST,
    ) -> Policy:
        """Publishers to the namespace wait for room, at most *timeout* seconds per
        publish; after that the *fallback* policy (drop_newest, drop_oldest or
        disconnect) decides."""
        return cls(
            PolicyKind.BLOCK, max_events, max_bytes, block_timeout=timeout,
            fallback=_kind(fallback, "policy.fallback"),
        ).validated()

    @classmethod
    def retry(
        cls,
        max_events: int = _DEFAULT_MAX_EVENTS,
        max_bytes: int = 0,
        *,
        initial_backoff: float = 0.01,
        max_backoff: float = 1.0,
        multiplier: float = 2.0,
        max_attempts: int = 5,
        jitter: float = 0.2,
    ) -> Policy:
        """An event that finds the buffer full is offered again after exponential backoff
        with jitter, up to *max_attempts* times; then it is dropped. At most
        ``max_events`` events wait for a retry at once."""
        return cls(
            PolicyKind.RETRY, max_events, max_bytes, initial_backoff=initial_backoff,
            max_backoff=max_backoff, multiplier=multiplier, max_attempts=max_attempts,
            jitter=jitter,
        ).validated()

    @classmethod
    def disconnect(cls, max_events: int = _DEFAULT_MAX_EVENTS, max_bytes: int = 0) -> Policy:
        """A subscriber that overflows its buffer is evicted (as NATS and Redis do)."""
        return cls(PolicyKind.DISCONNECT, max_events, max_bytes).validated()

    def validated(self) -> Policy:
        """Return self, or raise :class:`InvalidPolicy` naming the bad field."""
        if not isinstance(self.max_events, int) or self.max_events < 1:
            raise InvalidPolicy("policy.max_events", "must be a positive integer")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 0:
            raise InvalidPolicy("policy.max_bytes", "must be 0 (no bound) or positive")
        if self.kind is PolicyKind.BLOCK:
            if not self.block_timeout > 0:
                raise InvalidPolicy("policy.block_timeout", "must be positive")
            if self.fallback in (PolicyKind.BLOCK, PolicyKind.RETRY):
                raise InvalidPolicy(
                    "policy.fallback", "must be drop_newest, drop_oldest or disconnect"
                )
        if self.kind is PolicyKind.RETRY:
            if not self.initial_backoff > 0:
                raise InvalidPolicy("policy.initial_backoff", "must be positive")
            if self.max_backoff < self.initial_backoff:
                raise InvalidPolicy("policy.max_backoff", "must be >= initial_backoff")
            if not self.multiplier >= 1.0:
                raise InvalidPolicy("policy.multiplier", "must be >= 1")
            if not 1 <= self.max_attempts <= 100:
                raise InvalidPolicy("policy.max_attempts", "must be between 1 and 100")
            if not 0.0 <= self.jitter < 1.0:
                raise InvalidPolicy("policy.jitter", "must be in [0, 1)")
        return self

    def retry_delays(self, uniform: float) -> float:
        """The total time an event may wait for room: the sum of every backoff delay,
        each scaled by ``1 + jitter * (2 * uniform - 1)``."""
        total, delay = 0.0, self.initial_backoff
        scale = 1.0 + self.jitter * (2.0 * uniform - 1.0)
        for _ in range(self.max_attempts):
            total += min(delay, self.max_backoff) * scale
            delay *= self.multiplier
        return total


def _kind(value: PolicyKind | str, field: str) -> PolicyKind:
    try:
        return PolicyKind(value)
    except ValueError:
        names = ", ".join(k.value for k in PolicyKind)
        raise InvalidPolicy(field, f"{value!r} is not one of {names}") from None

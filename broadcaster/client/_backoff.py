"""Retry delays: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: *initial*, times *multiplier* per failed attempt, capped at
    *maximum*, each scaled by a random factor in ``[1 - jitter, 1 + jitter]``.

    :ivar max_attempts: consecutive failed connects before giving up (None: never)
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retrying after the *attempt*-th failure (from 1)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))

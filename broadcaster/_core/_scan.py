"""Filtering a range of a log within a CPU budget, so that no filter, however costly,
holds the event loop for long: the scan stops at the first check past the budget and
says where, and the reader comes back for the rest after other tasks ran."""

from __future__ import annotations

from collections.abc import Callable

from ._filters import Matcher
from ._log import EventLog
from ._types import Event

__all__ = ["Clock", "scan"]

#: monotonic seconds for CPU budgets (``time.perf_counter`` unless a test replaces it)
Clock = Callable[[], float]

_FIRST_STEP = 16  # events matched before the first look at the clock
_MAX_STEP = 1024


def scan(log: EventLog, matcher: Matcher, start: int, stop: int,
         clock: Clock | None, budget: float) -> tuple[list[Event], int]:
    """The events with ``start <= sequence < end`` that *matcher* accepts, and *end*:
    *stop*, or less when *budget* seconds of *clock* ran out first (always past
    *start* when ``start < stop``). No *clock*: the whole range."""
    if clock is None or stop - start <= _FIRST_STEP:
        return [e for e in log.read(start, stop) if matcher(e)], stop
    deadline = clock() + budget
    events: list[Event] = []
    position, step = start, _FIRST_STEP
    while position < stop:
        end = min(stop, position + step)
        events += [e for e in log.read(position, end) if matcher(e)]
        position = end
        if position < stop and clock() >= deadline:
            break
        step = min(step * 2, _MAX_STEP)
    return events, position

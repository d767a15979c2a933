"""Filtering a range of a log within a CPU budget, so that no filter, however costly,
holds the event loop for long: the scan stops at the first check past the budget and
says where, and the reader comes back for the rest after other tasks ran."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    *start* when ``start < stop``), or when the log gave only part of the range without
    waiting (a durable log's older history: then possibly *start*). No *clock*: the
    whole range the log gives."""
    if clock is None or stop - start <= _FIRST_STEP:
        chunk = log.read(start, stop)
        if len(chunk) < stop - start:
            return _partial(log, matcher, start, stop, chunk)
        return [e for e in chunk if matcher(e)], stop
    deadline = clock() + budget
    events: list[Event] = []
    position, step = start, _FIRST_STEP
    while position < stop:
        end = min(stop, position + step)
        chunk = log.read(position, end)
        events += [e for e in chunk if matcher(e)]
        if len(chunk) < end - position:  # the rest is not loaded yet
            return events, chunk[-1].sequence + 1 if chunk else position
        position = end
        if position < stop and clock() >= deadline:
            break
        step = min(step * 2, _MAX_STEP)
    return events, position


def _partial(log: EventLog, matcher: Matcher, start: int, stop: int,
             chunk: Sequence[Event]) -> tuple[list[Event], int]:
    """Match a range that the log gives in parts, as far as it gives without waiting."""
    events: list[Event] = []
    position = start
    while chunk:
        events += [e for e in chunk if matcher(e)]
        position = chunk[-1].sequence + 1
        if position >= stop:
            break
        chunk = log.read(position, stop)
    return events, position

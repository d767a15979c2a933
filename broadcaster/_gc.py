"""Tuning Python's cyclic garbage collector for a process that runs a hub.

A hub keeps every retained event as a Python object, and subscribers allocate a
list per batch they read. With CPython's default thresholds (a young collection
every 700 net allocations) the collector runs thousands of times a second under
load, each young pass walks the references of every fresh batch list, and it runs
inside whichever task happens to allocate: often the publisher, so publishing
*looks* O(subscribers) although the hub's own work is O(1) per event. Full passes
walk every retained event (tens of milliseconds with 200,000 retained) and show
up as latency spikes. A pass of the middle generation walks what every young pass
since the last one kept: with 20 young passes between two (CPython's ratio), a burst
of surviving objects (a client opening subscriptions over 1,000 namespaces each makes
a cursor per namespace) gave 40-65 ms passes; with :data:`MIDDLE_EVERY` it walks at most
about ``threshold * (MIDDLE_EVERY + 2)`` objects (10-13 ms at 10,000), for the same
total work.

:func:`tune_gc` is what ``broadcaster serve`` does at start-up. It changes
process-wide state, so the library never calls it on import: a program that
embeds a :class:`~broadcaster.Broadcaster` decides for itself.
"""

from __future__ import annotations

import gc

__all__ = ["DEFAULT_GC_THRESHOLD", "MIDDLE_EVERY", "OLD_EVERY", "tune_gc"]

#: Net allocations between young collections that ``broadcaster serve`` uses.
DEFAULT_GC_THRESHOLD = 10_000
#: Young collections between two collections of the middle generation.
MIDDLE_EVERY = 4
#: Middle collections between two looks at the old generation (a full pass, which
#: CPython makes only once the objects moved there since the last one are a quarter of
#: those it holds): 500, so that a full pass comes at most once per 3,000 young passes,
#: about as rarely as with CPython's 20 and 100 (2,200).
OLD_EVERY = 500


def tune_gc(threshold: int = DEFAULT_GC_THRESHOLD) -> tuple[int, int, int]:
    """Collect less often; return the thresholds in force before.

    Moves every object alive now (modules, configuration) to the permanent
    generation (:func:`gc.freeze`), so no later pass walks them, and sets the
    young-generation threshold to *threshold* with the middle generation collected
    every :data:`MIDDLE_EVERY` young passes and the old one looked at every
    :data:`OLD_EVERY` middle ones. Memory is still reclaimed by reference counting as
    soon as it is free; only reference cycles wait longer.

    :param threshold: net allocations between young collections; 0 leaves the
        collector as it is (and returns its thresholds)
    :raises ValueError: if *threshold* is negative
    """
    if threshold < 0:
        raise ValueError(f"threshold: must be >= 0, not {threshold}")
    before = gc.get_threshold()
    if threshold:
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, MIDDLE_EVERY, OLD_EVERY)
    return before

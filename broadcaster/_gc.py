"""Tuning Python's cyclic garbage collector for a process that runs a hub.

A hub keeps every retained event as a Python object, and subscribers allocate a
list per batch they read. With CPython's default thresholds (a young collection
every 700 net allocations) the collector runs thousands of times a second under
load, each young pass walks the references of every fresh batch list, and it runs
inside whichever task happens to allocate: often the publisher, so publishing
*looks* O(subscribers) although the hub's own work is O(1) per event. Full passes
walk every retained event (tens of milliseconds with 200,000 retained) and show
up as latency spikes.

:func:`tune_gc` is what ``broadcaster serve`` does at start-up. It changes
process-wide state, so the library never calls it on import: a program that
embeds a :class:`~broadcaster.Broadcaster` decides for itself.
"""

from __future__ import annotations

import gc

__all__ = ["DEFAULT_GC_THRESHOLD", "tune_gc"]

#: Net allocations between young collections that ``broadcaster serve`` uses.
DEFAULT_GC_THRESHOLD = 10_000


def tune_gc(threshold: int = DEFAULT_GC_THRESHOLD) -> tuple[int, int, int]:
    """Collect less often; return the thresholds in force before.

    Moves every object alive now (modules, configuration) to the permanent
    generation (:func:`gc.freeze`), so no later pass walks them, and sets the
    young-generation threshold to *threshold* with older generations collected
    every 20 and 100 passes of the one below. Memory is still reclaimed by
    reference counting as soon as it is free; only reference cycles wait longer.

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
        gc.set_threshold(threshold, 20, 100)
    return before

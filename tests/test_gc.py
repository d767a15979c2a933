"""tune_gc: what `broadcaster serve` does to the collector, and only when asked."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from broadcaster import DEFAULT_GC_THRESHOLD, tune_gc
from broadcaster._gc import MIDDLE_EVERY, OLD_EVERY


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_tune_gc_raises_the_young_threshold_and_freezes(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_gc() == (700, 10, 10)
    assert gc.get_threshold() == (DEFAULT_GC_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
    assert gc.get_freeze_count() > 0
    # collections between two looks at the old generation (a middle one after every
    # MIDDLE_EVERY + 1 young ones): no fewer than with CPython's ratios (20, 100)
    assert (MIDDLE_EVERY + 2) * (OLD_EVERY + 1) >= (20 + 2) * (100 + 1)


def test_a_burst_of_surviving_objects_is_walked_in_small_middle_passes(
        restore_gc: None) -> None:
    """Objects that survive young passes (a subscription over many namespaces makes a
    cursor per namespace) pile up in the middle generation; each pass of it walks at
    most about threshold * (MIDDLE_EVERY + 2) objects (the young passes it follows kept at
    most threshold each, and the young generation), not 21 young passes' worth."""
    tune_gc()
    walked: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 1:
            walked.append(len(gc.get_objects(0)) + len(gc.get_objects(1)))

    gc.callbacks.append(watch)
    try:
        # allocated one by one: young passes run meanwhile
        kept: list[list[int]] = [[] for _ in range(20 * DEFAULT_GC_THRESHOLD)]
    finally:
        gc.callbacks.remove(watch)
    assert len(kept) == 20 * DEFAULT_GC_THRESHOLD
    assert len(walked) >= 3
    assert max(walked) <= DEFAULT_GC_THRESHOLD * (MIDDLE_EVERY + 2) * 1.05


def test_zero_leaves_the_collector_alone(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    frozen = gc.get_freeze_count()
    assert tune_gc(0) == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == frozen


def test_negative_threshold_is_refused(restore_gc: None) -> None:
    with pytest.raises(ValueError, match="threshold"):
        tune_gc(-1)


def test_importing_the_library_does_not_touch_the_collector() -> None:
    code = "import gc, broadcaster, broadcaster.grpc, broadcaster.client; print(gc.get_threshold())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "(700, 10, 10)"

"""tune_gc: what `broadcaster serve` does to the collector, and only when asked."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from broadcaster import DEFAULT_GC_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_tune_gc_raises_the_young_threshold_and_freezes(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_gc() == (700, 10, 10)
    assert gc.get_threshold() == (DEFAULT_GC_THRESHOLD, 20, 100)
    assert gc.get_freeze_count() > 0


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

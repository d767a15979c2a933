"""Small helpers shared by the harness and its worker processes."""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["PAYLOAD_SIZE", "emit", "payload", "percentiles", "stamp_of", "tag_of"]

PAYLOAD_SIZE = 200
_STAMP = struct.Struct(">q")
_TAG = struct.Struct(">qH")
_PAD = b"x" * (PAYLOAD_SIZE - _TAG.size)


def payload(now_ns: int | None = None, phase: int = 0) -> bytes:
    """A 200-byte payload: a wall-clock ns timestamp (8 bytes), the run's phase number
    (2 bytes) and padding."""
    return _TAG.pack(time.time_ns() if now_ns is None else now_ns, phase) + _PAD


def stamp_of(data: bytes) -> int:
    """The wall-clock ns timestamp :func:`payload` put in *data*."""
    return _STAMP.unpack_from(data)[0]


def tag_of(data: bytes) -> tuple[int, int]:
    """The (timestamp ns, phase) :func:`payload` put in *data*."""
    stamp, phase = _TAG.unpack_from(data)
    return stamp, phase


def emit(**message: Any) -> None:
    """Write one JSON line to stdout for the harness."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles of *values* (empty dict when there are none)."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    out = {}
    for q in qs:
        rank = min(n - 1, max(0, round(q / 100 * n + 0.5) - 1))
        out[f"p{q:g}"] = ordered[rank]
    out["max"] = ordered[-1]
    return out


def run_worker(run: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
    """The ``main`` of an asyncio worker process: ``run(params)`` with the JSON parameters
    of ``sys.argv[1]``, bounded by their ``deadline`` (seconds)."""
    params = json.loads(sys.argv[1])
    asyncio.run(asyncio.wait_for(run(params), params["deadline"]))
    return 0

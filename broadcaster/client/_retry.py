"""Retrying calls whose HTTP/2 stream the server refused.

A server at its ``max_concurrent_streams`` answers a new stream with ``RST_STREAM``
``REFUSED_STREAM`` (HTTP/2 error code 7). By HTTP/2's definition (RFC 9113, section 8.7)
the server processed nothing of a refused stream, so the request can be sent again. gRPC
core retries such a stream once by itself (a "transparent retry", with the channel's
default ``grpc.enable_retries``); when the second attempt is refused too, the call fails
with ``UNAVAILABLE`` and details such as ``Stream removed (RST_STREAM (Received RST_STREAM
with error code 7))``. That happens when a client opens streams while others close: the
client counts a stream closed when it has read its status, the server a moment later.

The client retries refused calls itself, with :data:`REFUSED_BACKOFF`, within the call's
timeout, and never a call the server may have processed (any other failure).
"""

from __future__ import annotations

import collections
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import grpc
import grpc.aio

from ._backoff import Backoff

__all__ = ["REFUSED_BACKOFF", "Refusals", "call_unary", "failed_sending", "refused"]

T = TypeVar("T")

#: Delays between attempts of a refused call: short, since the server frees a stream
#: slot within a round trip, and jittered so that a burst does not come back at once.
REFUSED_BACKOFF = Backoff(initial=0.005, maximum=0.25, multiplier=2.0, jitter=0.5)

_REFUSED_RE = re.compile(r"\bRST_STREAM\b.*\berror code 7\b")


def refused(code: grpc.StatusCode, details: str | None) -> bool:
    """Whether a call failed because the server refused its stream (it processed none
    of it)."""
    return code is grpc.StatusCode.UNAVAILABLE and bool(_REFUSED_RE.search(details or ""))


def failed_sending(code: grpc.StatusCode, details: str | None) -> bool:
    """Whether grpc.aio failed a message that was being sent because its stream ended.

    grpc.aio then reports ``INTERNAL: Internal error from Core`` instead of the stream's
    real status (a refused stream among others): the caller cannot tell whether the
    server saw the stream, only that the message did not get through."""
    return code is grpc.StatusCode.INTERNAL and details == "Internal error from Core"


@dataclass(slots=True)
class Refusals:
    """Counts, per method, the calls of one client sent again after a refusal."""

    retried: collections.Counter[str] = field(default_factory=collections.Counter)


async def call_unary(
    method: str,
    attempt: Callable[[float], Awaitable[T]],
    *,
    seconds: float,
    rng: random.Random,
    refusals: Refusals,
) -> T:
    """Run ``attempt(remaining_seconds)`` until it returns, retrying refusals for at
    most *seconds* in all.

    :raises grpc.aio.AioRpcError: the first failure that is not a refusal, or the last
        refusal when the next attempt would not start in time
    """
    deadline = anyio.current_time() + seconds
    failures = 0
    while True:
        try:
            return await attempt(max(0.0, deadline - anyio.current_time()))
        except grpc.aio.AioRpcError as exc:
            if not refused(exc.code(), exc.details()):
                raise
            failures += 1
            delay = REFUSED_BACKOFF.delay(failures, rng)
            if anyio.current_time() + delay >= deadline:
                raise
        refusals.retried[method] += 1
        await anyio.sleep(delay)

"""The asyncio backend every anyio test runs on: anyio's, on an event loop that lets
grpc.aio's stray completions pass.

grpc.aio's completion-queue poller is process-wide, and the loop that reads it hands
each finished operation to the loop that started it. An operation still in flight when
its test's loop closed (a channel's last ping, a server's shutdown) reaches a later
test's loop, whose hand-off to the closed loop raises ``RuntimeError('Event loop is
closed')`` in grpc's reader callback. anyio's runner turns that into a failure of
whichever test happens to be running, and the events queued behind it wait for the next
completion. This loop drops that one error (the operation belongs to a loop that no
longer exists) and reads the rest of the queue at once; every other error is reported
as before."""

from __future__ import annotations

import asyncio
import re
from typing import Any

#: grpc's completion-queue reader, and the one the server puts in its place
#: (broadcaster/grpc/_completions.py), as a reader callback's handle shows them
_GRPC_READERS = re.compile(r"_handle_events|read_completions")


def _stray_grpc_completion(context: dict[str, Any]) -> asyncio.Handle | None:
    """The grpc.aio reader callback that failed handing an event to a closed loop, if
    that is what *context* reports."""
    error, handle = context.get("exception"), context.get("handle")
    if (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
            and isinstance(handle, asyncio.Handle) and _GRPC_READERS.search(repr(handle))):
        return handle
    return None


class TestLoop(asyncio.SelectorEventLoop):
    """An asyncio loop that lets grpc.aio's stray completions pass (module docstring)."""

    __test__ = False  # not a test class

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        handle = _stray_grpc_completion(context)
        if handle is None:
            super().call_exception_handler(context)
            return
        # grpc popped the stray event before failing: what is queued behind it is read
        # by running the same callback again.
        self.call_soon(handle._callback, *handle._args)  # type: ignore[attr-defined]


ASYNCIO = ("asyncio", {"loop_factory": TestLoop})
"""``anyio_backend``'s value for asyncio."""

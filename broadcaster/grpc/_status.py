"""Map core errors to gRPC status codes, at the border (as containerd's errdefs do)."""

from __future__ import annotations

import grpc

from .._core._durable import LogUnavailable, StorageError
from .._core._errors import BroadcasterError, InvalidArgument, QuotaExceeded

__all__ = ["status_of"]


def status_of(exc: BroadcasterError) -> grpc.StatusCode:
    """The status code for a core error: INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
    UNAVAILABLE (the durable log cannot store now, or failed: nothing was acknowledged,
    publishing again with the same event ids is safe), or FAILED_PRECONDITION for
    anything else the core raises on purpose."""
    if isinstance(exc, LogUnavailable | StorageError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, QuotaExceeded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.FAILED_PRECONDITION

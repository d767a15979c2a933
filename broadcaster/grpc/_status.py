"""Map core errors to gRPC status codes, at the border (as containerd's errdefs do)."""

from __future__ import annotations

import grpc

from .._core._errors import BroadcasterError, InvalidArgument, QuotaExceeded

__all__ = ["status_of"]


def status_of(exc: BroadcasterError) -> grpc.StatusCode:
    """The status code for a core error: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, or
    FAILED_PRECONDITION for anything else the core raises on purpose."""
    if isinstance(exc, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, QuotaExceeded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.FAILED_PRECONDITION

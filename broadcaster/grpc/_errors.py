"""Errors become gRPC statuses here and nowhere else (as httpx's
``map_httpcore_exceptions`` turns httpcore's errors into its own, and containerd's
``errdefs`` into gRPC codes).

What the edge answers with is an :class:`RpcError`: a status code, a message that names
the field at fault, and the reason it is counted under in
``broadcaster_grpc_rejected_total``. Edge checks raise one directly; core errors become
one in :class:`map_core_errors`, by one table::

    core                                  gRPC status
    BroadcasterError
    ├── InvalidArgument                   INVALID_ARGUMENT
    ├── QuotaExceeded                     RESOURCE_EXHAUSTED
    ├── LogUnavailable                    UNAVAILABLE
    ├── StorageError                      UNAVAILABLE
    ├── ... that is also a PermissionError PERMISSION_DENIED
    └── any other                         FAILED_PRECONDITION
    anyio.ClosedResourceError (hub closed) UNAVAILABLE  "server: shutting down"

``LogUnavailable`` (the durable log cannot store now: NATS unreachable, no stream leader)
and ``StorageError`` (the storage engine failed) are UNAVAILABLE: nothing was
acknowledged, and publishing again with the same event ids stores each event once.

The table is read along the error's class hierarchy, so a core error that is also one of
Python's built-in kinds maps by that kind: ``class PermissionDenied(BroadcasterError,
PermissionError)`` answers PERMISSION_DENIED with nothing to add here.

Every handler of both APIs answers through this module, whichever way the answer goes:

* a whole call: :class:`answering` ends it with ``context.abort`` (unary calls,
  containerd's Subscribe); the interceptor does the same for its own checks and for an
  :class:`RpcError` that escapes a handler (a request that could not be parsed);
* one request of a stream (a rejected ``Add``, a rejected ``PublishStream`` batch): the
  in-band ``Error`` carries :attr:`RpcError.wire_code` and :attr:`RpcError.message`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

import anyio
import grpc

from .. import BroadcasterError, InvalidArgument, LogUnavailable, QuotaExceeded, StorageError

__all__ = [
    "SHUTTING_DOWN",
    "RpcError",
    "abort",
    "answering",
    "map_core_errors",
    "rpc_error",
    "status_of",
]

#: The message of every call refused or ended because the server is shutting down.
SHUTTING_DOWN = "server: shutting down"

#: Core error classes (or Python's built-in kinds) and their status, most specific first.
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LogUnavailable, grpc.StatusCode.UNAVAILABLE),
    (StorageError, grpc.StatusCode.UNAVAILABLE),
    (PermissionError, grpc.StatusCode.PERMISSION_DENIED),
)

_Context = grpc.aio.ServicerContext[Any, Any]
#: Renames a core error's field for the wire (``items[3].topic`` -> ``events[3].topic``).
Rename = Callable[[str], str]


class RpcError(Exception):
    """An answer other than OK, for a call or for one request of a stream.

    :param code: the status code
    :param message: what is wrong, starting with the field at fault
    :param reason: the ``reason`` label of ``broadcaster_grpc_rejected_total``; the code's
        name in lower case when None (``invalid_argument``)
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.name.lower()

    @property
    def wire_code(self) -> int:
        """The numeric code, for an in-band ``Error``."""
        number: int = self.code.value[0]
        return number


def status_of(exc: BroadcasterError) -> grpc.StatusCode:
    """The status code of a core error (see the table in the module docstring)."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def rpc_error(exc: BroadcasterError | anyio.ClosedResourceError,
              rename: Rename | None = None) -> RpcError:
    """The answer for a core error: its status and ``field: message``, the field renamed
    by *rename*; a closed hub is the server shutting down."""
    if isinstance(exc, anyio.ClosedResourceError):
        return RpcError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    field = exc.field if rename is None else rename(exc.field)
    # an error may say what it is counted as (limits per identity, permissions)
    reason = getattr(exc, "reject_reason", None)
    return RpcError(status_of(exc), f"{field}: {exc.message}", reason)


class map_core_errors:
    """``with map_core_errors():`` re-raises a core error (or a closed hub's
    ``ClosedResourceError``) as the :class:`RpcError` to answer, chained to it.

    :param rename: renames the field of a core error for the wire
    """

    __slots__ = ("_rename",)

    def __init__(self, rename: Rename | None = None) -> None:
        self._rename = rename

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, BroadcasterError | anyio.ClosedResourceError):
            raise rpc_error(exc, self._rename) from exc


class answering:
    """``async with answering(context, on_reject):`` around a handler's body: an
    :class:`RpcError` (or a core error, mapped) ends the call with its status, counted
    under its reason.

    :param context: the call's context
    :param on_reject: called with the reason of each error answered
    :param rename: renames the field of a core error for the wire
    """

    __slots__ = ("_context", "_on_reject", "_rename")

    def __init__(self, context: _Context, on_reject: Callable[[str], None],
                 rename: Rename | None = None) -> None:
        self._context = context
        self._on_reject = on_reject
        self._rename = rename

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if isinstance(exc, BroadcasterError | anyio.ClosedResourceError):
            exc = rpc_error(exc, self._rename)
        if isinstance(exc, RpcError):
            await abort(self._context, exc, self._on_reject)


async def abort(context: _Context, error: RpcError,
                on_reject: Callable[[str], None] | None = None) -> NoReturn:
    """End the call with *error*'s status, counted under its reason by *on_reject*
    (raises, as ``context.abort`` does)."""
    if on_reject is not None:
        on_reject(error.reason)
    await context.abort(error.code, error.message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover

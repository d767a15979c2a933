"""Errors raised by the broadcaster client.

Every error the client raises derives from :class:`ClientError`::

    ClientError
    ├── InvalidArgumentError (also a ValueError)    a malformed argument; nothing was sent
    ├── ClientClosedError (also anyio.ClosedResourceError)
    │                                               the client is closed (or was never
    │                                               entered with ``async with``)
    ├── ClientTimeoutError (also a TimeoutError)    a wait of the client itself ran out
    │                                               (an Add not answered, a flush)
    └── StatusError                                 a gRPC status from the server (or the
        │                                           connection)
        ├── PublishError                            a publish (or one batch of a publisher)
        │                                           was rejected or may be lost
        └── SubscribeError                          an Add was rejected, or the Subscribe
                                                    stream failed for good

An error caused by another one is chained to it (``raise ... from``): an
:class:`InvalidArgumentError` to the core's :class:`broadcaster.InvalidArgument` that
found the fault, a :class:`StatusError` to the ``grpc.aio.AioRpcError`` of the call.
The extra bases keep ``except ValueError``, ``except TimeoutError`` and ``except
anyio.ClosedResourceError`` working.

:attr:`InvalidArgumentError.field` and :attr:`StatusError.field` name the field at fault:
the argument (``topic``, ``since``) or what the server named at the start of its message
(``events[2].topic: must start with '/'`` -> ``events[2].topic``), or ``""``.
"""

from __future__ import annotations

import re
from typing import Self

import anyio
import grpc

__all__ = [
    "ClientClosedError",
    "ClientError",
    "ClientTimeoutError",
    "InvalidArgumentError",
    "PublishError",
    "StatusError",
    "SubscribeError",
    "field_of",
]

_FIELD_RE = re.compile(r"^([A-Za-z_][\w.\[\]\"'-]*):\s")


def field_of(message: str) -> str:
    """The field named at the start of a server message such as ``topic: must start with '/'``."""
    match = _FIELD_RE.match(message)
    return match.group(1) if match else ""


class ClientError(Exception):
    """Base class of every error the client raises."""


class InvalidArgumentError(ClientError, ValueError):
    """An argument is malformed (checked before anything is sent); retrying the same call
    cannot succeed.

    :param field: the argument at fault (``namespace``, ``topic``, ``labels``, ``since``...)
    :param message: what is wrong with it
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ClientClosedError(ClientError, anyio.ClosedResourceError):
    """The client is closed, or not entered: subscriptions need ``async with Client(...)``,
    which owns their background tasks."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A wait of the client itself ran out: the server did not accept a subscription in
    time, or a publisher's flush did not finish. Chained to the last connection error,
    if there was one."""


class StatusError(ClientError):
    """The server (or the connection to it) answered with a non-OK gRPC status.

    :param code: the status code
    :param message: the server's message (names the offending field for bad input)
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field = field_of(message)

    @classmethod
    def from_rpc_error(cls, exc: grpc.aio.AioRpcError) -> Self:
        """Build the error from a failed call; raise it ``from exc``."""
        return cls(exc.code() or grpc.StatusCode.UNKNOWN, exc.details() or "")

    @classmethod
    def from_code_value(cls, value: int, message: str) -> Self:
        """Build the error from an in-band ``broadcaster.v1.Error`` (numeric code)."""
        return cls(_CODES.get(value, grpc.StatusCode.UNKNOWN), message)


class PublishError(StatusError):
    """An event was not published, or may not have been (``UNAVAILABLE`` when a
    publisher's stream broke before the server acknowledged it). For a batched
    publisher, every event of a rejected batch fails with the same error (batches are
    all-or-none); :attr:`index` is the event's position in its batch."""

    index: int | None = None


class SubscribeError(StatusError):
    """A subscription could not be created or resumed (the server rejected the Add, or the
    Subscribe stream failed with a status that retrying cannot fix)."""


_CODES = {code.value[0]: code for code in grpc.StatusCode}

"""Errors raised by the broadcaster client.

Every error the client raises on purpose derives from :class:`ClientError`::

    ClientError
    └── StatusError              a gRPC status from the server (or the connection)
        ├── PublishError         a publish (or one batch of a publisher) was rejected
        └── SubscribeError       an Add was rejected, or the Subscribe stream failed for good

A closed :class:`~broadcaster.client.Client` raises :class:`anyio.ClosedResourceError`.

:attr:`StatusError.field` is the field the server named at the start of its message
(``events[2].topic: must start with '/'`` -> ``events[2].topic``), or ``""``.
"""

from __future__ import annotations

import re

import grpc

__all__ = ["ClientError", "PublishError", "StatusError", "SubscribeError", "field_of"]

_FIELD_RE = re.compile(r"^([A-Za-z_][\w.\[\]\"'-]*):\s")


def field_of(message: str) -> str:
    """The field named at the start of a server message such as ``topic: must start with '/'``."""
    match = _FIELD_RE.match(message)
    return match.group(1) if match else ""


class ClientError(Exception):
    """Base class of the errors the client raises on purpose."""


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
    def from_rpc_error(cls, exc: grpc.RpcError) -> StatusError:
        """Build the error from a failed call (``grpc.aio.AioRpcError``)."""
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")

    @classmethod
    def from_code_value(cls, value: int, message: str) -> StatusError:
        """Build the error from an in-band ``broadcaster.v1.Error`` (numeric code)."""
        return cls(_CODES.get(value, grpc.StatusCode.UNKNOWN), message)


class PublishError(StatusError):
    """An event was not published. For a batched publisher, every event of the rejected
    batch fails with the same error (batches are all-or-none); :attr:`index` is the
    event's position in its batch."""

    index: int | None = None


class SubscribeError(StatusError):
    """A subscription could not be created or resumed (the server rejected the Add, or the
    Subscribe stream failed with a status that retrying cannot fix)."""


_CODES = {code.value[0]: code for code in grpc.StatusCode}

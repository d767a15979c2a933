"""Errors raised by the broadcaster core.

Every error the core raises on purpose derives from :class:`BroadcasterError`::

    BroadcasterError
    ├── InvalidArgument (also a ValueError)    -> gRPC INVALID_ARGUMENT
    │   ├── InvalidNamespace
    │   ├── InvalidTopic
    │   ├── InvalidFilter
    │   ├── InvalidPolicy
    │   └── InvalidLabels
    └── QuotaExceeded                          -> gRPC RESOURCE_EXHAUSTED
        └── PayloadTooLarge

Resource errors are anyio's own: :class:`anyio.ClosedResourceError` when you use a
subscription or hub that is closed, :class:`anyio.EndOfStream` when a subscription has
ended (evicted, hub closed) and has nothing more to give.

Each error names the field it is about in :attr:`BroadcasterError.field`, so an edge
adapter can build a message such as ``namespace: must not be empty``.
"""

from __future__ import annotations

__all__ = [
    "BroadcasterError",
    "InvalidArgument",
    "InvalidFilter",
    "InvalidLabels",
    "InvalidNamespace",
    "InvalidPolicy",
    "InvalidTopic",
    "PayloadTooLarge",
    "QuotaExceeded",
]


class BroadcasterError(Exception):
    """Base class of the errors the broadcaster raises on purpose.

    :param field: the name of the argument or setting at fault (``namespace``,
        ``topic``, ``filters[1]``, ``policy.max_events``...)
    :param message: what is wrong with it
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidArgument(BroadcasterError, ValueError):
    """An argument is malformed; retrying the same call cannot succeed."""


class InvalidNamespace(InvalidArgument):
    """A namespace name breaks containerd's naming rule."""


class InvalidTopic(InvalidArgument):
    """A topic is not a ``/``-separated path of non-empty components."""


class InvalidFilter(InvalidArgument):
    """A filter expression cannot be parsed."""


class InvalidPolicy(InvalidArgument):
    """An overflow policy is malformed or exceeds the namespace's limits."""


class InvalidLabels(InvalidArgument):
    """Event labels are malformed or too large."""


class QuotaExceeded(BroadcasterError):
    """A per-namespace or per-hub quota would be exceeded; the call may succeed later."""


class PayloadTooLarge(QuotaExceeded):
    """An event payload is larger than its namespace allows."""

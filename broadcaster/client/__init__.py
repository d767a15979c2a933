"""The broadcaster client (grpc.aio, on anyio's asyncio backend).

::

    from broadcaster.client import Client

    async with Client("unix:/run/broadcaster.sock") as client:
        async with client.publisher("k8s.io") as pub:
            await pub.publish("/tasks/exit", task_exit_message)
        async with client.subscribe("k8s.io", filters=['topic=="/tasks/exit"']) as sub:
            async for item in sub:
                ...

Every error it raises is a :class:`ClientError` (the tree is in
``broadcaster/client/_errors.py``). :class:`SubscribeStream` is exported because
:attr:`Client.subscribe_stream` returns one (its counters are for monitoring and tests).
"""

import contextlib as _contextlib

from ._backoff import Backoff
from ._client import Client, grpc_target
from ._credentials import ClientTLS, read_token
from ._errors import (
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    InvalidArgumentError,
    PublishError,
    StatusError,
    SubscribeError,
)
from ._publisher import Publisher
from ._subscribe import SubscribeStream
from ._subscription import Subscription
from ._types import AvailabilityNotice, DropNotice, Ended, Event, Item, ResyncNotice

__all__ = [
    "AvailabilityNotice",
    "Backoff",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ClientTLS",
    "ClientTimeoutError",
    "DropNotice",
    "Ended",
    "Event",
    "InvalidArgumentError",
    "Item",
    "PublishError",
    "Publisher",
    "ResyncNotice",
    "StatusError",
    "SubscribeError",
    "SubscribeStream",
    "Subscription",
    "grpc_target",
    "read_token",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("broadcaster.client._"):
            with _contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "broadcaster.client"


_fixup_module_metadata()
del _fixup_module_metadata

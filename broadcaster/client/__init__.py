"""The broadcaster client (asyncio, grpc.aio).

::

    from broadcaster.client import Client

    async with Client("unix:/run/broadcaster.sock") as client:
        async with client.publisher("k8s.io") as pub:
            await pub.publish("/tasks/exit", task_exit_message)
        async with client.subscribe("k8s.io", filters=['topic=="/tasks/exit"']) as sub:
            async for item in sub:
                ...
"""

import contextlib

from ._client import Client, grpc_target
from ._errors import ClientError, PublishError, StatusError, SubscribeError
from ._publisher import Publisher
from ._subscribe import Backoff, Subscription
from ._types import DropNotice, Ended, Event, Item, ResyncNotice

__all__ = [
    "Backoff",
    "Client",
    "ClientError",
    "DropNotice",
    "Ended",
    "Event",
    "Item",
    "PublishError",
    "Publisher",
    "ResyncNotice",
    "StatusError",
    "SubscribeError",
    "Subscription",
    "grpc_target",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("broadcaster.client._"):
            with contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "broadcaster.client"


_fixup_module_metadata()
del _fixup_module_metadata

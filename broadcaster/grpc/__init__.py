"""The gRPC edge: broadcaster.v1 and containerd-compatible services over the core hub.

grpc.aio is asyncio-only, so this package runs on anyio's asyncio backend. Its front
door is :class:`Server` (the hub, both APIs, health, reflection and metrics, as one
``async with``) and :class:`ServerConfig` (its settings); ``broadcaster serve`` runs one.
"""

import contextlib as _contextlib

from ._server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("broadcaster.grpc._"):
            with _contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "broadcaster.grpc"


_fixup_module_metadata()
del _fixup_module_metadata

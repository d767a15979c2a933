"""The gRPC edge: broadcaster.v1 and containerd-compatible services over the core hub.

grpc.aio is asyncio-only, so this package runs on anyio's asyncio backend.
"""

from ._server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]

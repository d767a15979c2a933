"""Fixtures of the client tests: real servers (broadcaster.grpc.Server) on loopback or
unix sockets, and a TCP proxy whose connections a test can cut."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import pytest
from prometheus_client import CollectorRegistry

from broadcaster import HubConfig

from .._loops import ASYNCIO

try:
    from broadcaster.grpc import Server, ServerConfig  # type: ignore[attr-defined]
except ImportError:  # the package front door may not re-export them yet
    from broadcaster.grpc._server import Server, ServerConfig


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO  # grpc.aio is asyncio-only


MakeServer = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


@pytest.fixture
def make_server() -> MakeServer:
    """``async with make_server(hub=HubConfig(...), listen=[...]) as server``."""

    @contextlib.asynccontextmanager
    async def make(
        hub: HubConfig | None = None, listen: list[str] | None = None, **config: Any
    ) -> AsyncIterator[Any]:
        cfg = ServerConfig(listen=listen or ["127.0.0.1:0"], hub=hub or HubConfig(),
                           grace_period=0.5, **config)
        async with Server(cfg, registry=CollectorRegistry()) as server:
            yield server

    return make


@pytest.fixture
async def server(make_server: MakeServer) -> AsyncIterator[Any]:
    async with make_server(hub=HubConfig(heartbeat_interval=0.2)) as srv:
        yield srv


class CuttableProxy:
    """A TCP proxy to *target*; :meth:`cut` closes every connection through it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._scopes: set[anyio.CancelScope] = set()
        self.address = ""
        self.connections = 0

    async def serve(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.address = f"127.0.0.1:{port}"
        async with listener:
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client, await anyio.connect_tcp(*self._target) as upstream:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._pipe, client, upstream)
                        tg.start_soon(self._pipe, upstream, client)
            except OSError:
                pass
            finally:
                self._scopes.discard(scope)

    @staticmethod
    async def _pipe(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError,
                                 anyio.ClosedResourceError):
            async for chunk in src:
                await dst.send(chunk)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await dst.send_eof()

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()


@pytest.fixture
async def proxy_to(server: Any) -> AsyncIterator[CuttableProxy]:
    host, _, port = server.addresses[0].rpartition(":")
    proxy = CuttableProxy(host, int(port))
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        yield proxy
        tg.cancel_scope.cancel()

"""Fixtures for tests over real gRPC connections (asyncio only).

``server`` is a started :class:`Server` on ``127.0.0.1:0`` plus a unix socket in
``tmp_path``, with a fresh registry and fast heartbeats. ``make_server(**overrides)``
starts more, with :class:`ServerConfig` fields (and ``hub=HubConfig(...)``) overridden.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from broadcaster import HubConfig
from broadcaster.grpc import Server, ServerConfig

MakeServer = Callable[..., Any]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """gRPC tests run on asyncio only (grpc.aio)."""
    return "asyncio"


def server_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    """A test ServerConfig: loopback port 0 + a unix socket, fast heartbeats."""
    settings: dict[str, Any] = {
        "listen": ["127.0.0.1:0", f"unix:{tmp_path / 'broadcaster.sock'}"],
        "metrics_listen": None,
        "hub": HubConfig(heartbeat_interval=0.25, max_missed_heartbeats=120,
                         overflow_check_interval=0.02),
        "grace_period": 2.0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[MakeServer]:
    """``await make_server(**overrides)`` starts a Server (stopped at teardown)."""
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def make(**overrides: Any) -> Server:
            nonlocal count
            count += 1
            base = tmp_path / f"server{count}"
            base.mkdir()
            registry = overrides.pop("registry", None) or CollectorRegistry()
            config = server_config(base, **overrides)
            return await stack.enter_async_context(Server(config, registry=registry))

        yield make


@pytest.fixture
async def server(make_server: MakeServer) -> Server:
    """A started Server with the default test settings."""
    return await make_server()  # type: ignore[no-any-return]

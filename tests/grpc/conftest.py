"""Fixtures for tests over real gRPC connections (asyncio only).

``server`` is a started :class:`Server` on ``127.0.0.1:0`` plus a unix socket in
``tmp_path``, with a fresh registry and fast heartbeats. ``make_server(**overrides)``
starts more, with :class:`ServerConfig` fields (and ``hub=HubConfig(...)``) overridden.

Every test that starts servers runs once per log backend (``server_log``): ``memory``,
``local`` (a data directory per server in ``tmp_path``) and ``jetstream`` (streams of
their own per server on the session's nats-server); tests marked ``memory_only(reason)``
on the memory log only.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from broadcaster import HubConfig
from broadcaster._log_backend import BACKENDS, LogConfig
from broadcaster.grpc import Server, ServerConfig

from .._loops import ASYNCIO

MakeServer = Callable[..., Any]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    """gRPC tests run on asyncio only (grpc.aio)."""
    return ASYNCIO


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_log" in metafunc.fixturenames:
        memory_only = metafunc.definition.get_closest_marker("memory_only") is not None
        metafunc.parametrize("server_log", ["memory"] if memory_only else list(BACKENDS),
                             indirect=True)


@pytest.fixture
def server_log(request: pytest.FixtureRequest) -> str:
    """The log backend of the servers the test starts."""
    return str(request.param)


def log_config(log: str, base: Path, nats_url: str | None) -> LogConfig:
    """A server's log: a data directory in *base*, or streams of its own on *nats_url*."""
    if log == "local":
        return LogConfig.for_local(base / "data")
    if log == "jetstream":
        assert nats_url is not None
        tag = f"g{uuid.uuid4().hex[:10]}"
        return LogConfig.for_jetstream([nats_url], stream_prefix=f"{tag}-",
                                       subject_prefix=f"{tag}.ns", heartbeat=0.2,
                                       ack_timeout=3.0)
    return LogConfig()


@pytest.fixture
async def make_server(tmp_path: Path, server_log: str,
                      request: pytest.FixtureRequest) -> AsyncIterator[MakeServer]:
    """``await make_server(**overrides)`` starts a Server (stopped at teardown)."""
    nats_url = request.getfixturevalue("session_nats").url if server_log == "jetstream" \
        else None
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def make(**overrides: Any) -> Server:
            nonlocal count
            count += 1
            base = tmp_path / f"server{count}"
            base.mkdir()
            registry = overrides.pop("registry", None) or CollectorRegistry()
            overrides.setdefault("log", log_config(server_log, base, nats_url))
            config = server_config(base, **overrides)
            return await stack.enter_async_context(Server(config, registry=registry))

        yield make


@pytest.fixture
async def server(make_server: MakeServer) -> Server:
    """A started Server with the default test settings."""
    return await make_server()  # type: ignore[no-any-return]

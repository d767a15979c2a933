"""Fixtures of the cluster tests: broadcaster servers on one JetStream log, in process
(``Server``) or as real ``broadcaster serve`` processes, on a nats-server or a 3-node
NATS cluster started by the tests (``tests/_nats.py``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from broadcaster import HubConfig
from broadcaster._log_backend import LogConfig
from broadcaster.grpc import Server, ServerConfig

from .._loops import ASYNCIO

MakeNode = Callable[..., Any]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO  # grpc.aio and nats-py are asyncio-only


def jetstream_log(urls: list[str], tag: str, **settings: Any) -> LogConfig:
    """The jetstream log of every node of one test (their streams share *tag*)."""
    settings = {"heartbeat": 0.2, "ack_timeout": 2.0, **settings}
    return LogConfig.for_jetstream(urls, stream_prefix=f"{tag}-", subject_prefix=f"{tag}.ns",
                                   **settings)


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    """``await make_node(urls)``: a started in-process Server on the test's JetStream log
    (nodes of one test share it); ``log_settings`` (JetStreamConfig fields), ``hub=`` and
    other ServerConfig fields may be given. Stopped at teardown."""
    tag = f"c{uuid.uuid4().hex[:10]}"
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def make(urls: list[str], log_settings: dict[str, Any] | None = None,
                       **overrides: Any) -> Server:
            nonlocal count
            count += 1
            settings: dict[str, Any] = {
                "listen": ["127.0.0.1:0"],
                "hub": HubConfig(heartbeat_interval=0.25, max_missed_heartbeats=40),
                "log": jetstream_log(urls, tag, **(log_settings or {})),
                "grace_period": 1.0,
            }
            settings.update(overrides)
            server = Server(ServerConfig(**settings), registry=CollectorRegistry())
            return await stack.enter_async_context(server)

        yield make

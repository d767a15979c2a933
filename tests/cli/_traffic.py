"""A server with traffic for the `broadcaster top` tests.

Namespace ``busy`` is published to over gRPC and read by a gRPC subscriber; namespace
``stuck`` is published to as well and has one in-process subscription that never
reads, with ``drop_newest(4)``: it drops, and its lag is exactly 4.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

from broadcaster import HubConfig, Policy
from broadcaster.client import Client, Subscription
from broadcaster.grpc import Server, ServerConfig

STUCK_BOUND = 4


def server_config(tmp_path: Path) -> ServerConfig:
    # heartbeats far apart: the never-reading in-process subscription is not evicted
    return ServerConfig(listen=["127.0.0.1:0", f"unix:{tmp_path / 'b.sock'}"],
                        hub=HubConfig(heartbeat_interval=60.0), grace_period=0.5)


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path) -> AsyncIterator[Server]:
    async with Server(server_config(tmp_path), registry=CollectorRegistry()) as server:
        yield server


async def _drain(sub: Subscription) -> None:
    async for _ in sub:
        pass


async def _publish(client: Client) -> None:
    """About 1,000 events/s into each namespace, until cancelled (paced, not a wait)."""
    async with client.publisher("busy") as busy, client.publisher("stuck") as stuck:
        while True:
            for _ in range(10):
                await busy.submit("/tasks/start", b"x" * 100)
                await stuck.submit("/tasks/exit", b"y" * 100)
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def traffic(server: Server) -> AsyncIterator[None]:
    """Publishing and reading go on while the block runs; both subscriptions are
    registered before it starts."""
    hub: Any = server.hub
    async with (Client(server.addresses[0]) as client,
                hub.subscribe("stuck", policy=Policy.drop_newest(max_events=STUCK_BOUND)),
                client.subscribe(["busy"]) as sub,
                anyio.create_task_group() as tg):
        tg.start_soon(_drain, sub)
        tg.start_soon(_publish, client)
        with anyio.fail_after(10):
            while server.hub.statistics().subscriptions < 2:
                await anyio.sleep(0.01)
        yield
        tg.cancel_scope.cancel()

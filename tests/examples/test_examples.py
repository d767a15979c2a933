"""The examples run as real processes against a Server started in the test."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream
from prometheus_client import CollectorRegistry

from broadcaster import HubConfig
from broadcaster.client import Client
from broadcaster.containerd.events import task_pb2

from .._loops import ASYNCIO

try:
    from broadcaster.grpc import Server, ServerConfig  # type: ignore[attr-defined]
except ImportError:
    from broadcaster.grpc._server import Server, ServerConfig

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    config = ServerConfig(listen=["127.0.0.1:0"], hub=HubConfig(heartbeat_interval=0.2),
                          metrics_listen="127.0.0.1:0", grace_period=0.5)
    async with Server(config, registry=CollectorRegistry()) as srv:
        yield srv


class Lines:
    """Collects the stdout lines of a process."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._stream = TextReceiveStream(process.stdout)  # type: ignore[arg-type]
        self._buffer = ""

    async def until(self, predicate: Any, within: float = 15) -> None:
        with anyio.fail_after(within):
            while not predicate(self.lines):
                try:
                    chunk = await self._stream.receive()
                except anyio.EndOfStream:
                    raise AssertionError(f"process ended; output: {self.lines}") from None
                self._buffer += chunk
                *done, self._buffer = self._buffer.split("\n")
                self.lines.extend(done)


def _exits(lines: list[str]) -> list[tuple[str, int]]:
    out = []
    for line in lines:
        if line.startswith("EXIT "):
            parts = line.split()
            out.append((parts[1], int(parts[3].removeprefix("seq="))))
    return out


async def _publish_exits(client: Client, names: list[str]) -> None:
    for name in names:
        await client.publish("k8s.io", "/tasks/create", task_pb2.TaskCreate(container_id=name))
        await client.publish("k8s.io", "/tasks/exit", task_pb2.TaskExit(container_id=name))


async def test_watcher_resumes_after_sigkill_without_missing_an_exit(
    server: Any, tmp_path: Path
) -> None:
    """Guarantee tested: every exit is reported at least once with no gap in the exit
    sequences; a duplicate is allowed only for exits reported just before the kill."""
    address = server.addresses[0]
    state = tmp_path / "state.json"
    cmd = [sys.executable, str(EXAMPLES / "kubelet_watcher.py"), "--address", address,
           "--namespace", "k8s.io", "--state", str(state)]
    async with Client(address) as client:
        first = await anyio.open_process(cmd)
        async with first:
            out1 = Lines(first)
            await out1.until(lambda ls: any(x.startswith("WATCHING") for x in ls))
            await _publish_exits(client, [f"a{i}" for i in range(5)])
            await out1.until(lambda ls: len(_exits(ls)) == 5)
            first.kill()
            await first.wait()
        # published while the watcher is dead
        await _publish_exits(client, [f"b{i}" for i in range(5)])
        second = await anyio.open_process(cmd)
        async with second:
            out2 = Lines(second)
            await out2.until(lambda ls: any(x.startswith("WATCHING") for x in ls))
            await _publish_exits(client, [f"c{i}" for i in range(3)])
            await out2.until(lambda ls: {"c0", "c1", "c2"} <= {n for n, _ in _exits(ls)})
            second.terminate()
    before, after = _exits(out1.lines), _exits(out2.lines)
    assert [n for n, _ in before] == [f"a{i}" for i in range(5)]
    assert "RELIST startup" in out1.lines and "RELIST startup" not in out2.lines
    duplicates = [e for e in after if e in before]
    fresh = [e for e in after if e not in before]
    assert duplicates == before[len(before) - len(duplicates):]  # only a tail, re-sent
    assert [n for n, _ in fresh] == [f"b{i}" for i in range(5)] + [f"c{i}" for i in range(3)]
    # exits are every other sequence (create, exit, create, exit...): no gap
    assert [s for _, s in before + fresh] == list(range(2, 2 * 13 + 1, 2))


async def test_shim_publisher_and_slow_consumer(server: Any) -> None:
    address = server.addresses[0]
    with anyio.fail_after(30):
        shim = await anyio.run_process(
            [sys.executable, str(EXAMPLES / "shim_publisher.py"), "--address", address,
             "--containers", "50", "--wave", "20", "--namespace", "shim"])
        slow = await anyio.run_process(
            [sys.executable, str(EXAMPLES / "slow_consumer.py"), "--address", address,
             "--events", "2000", "--metrics-url", f"http://{server.metrics_address}/metrics"])
    assert "published 150 events, sequences 1..150 of shim" in shim.stdout.decode()
    stats = server.hub.statistics().namespaces["shim"]
    assert stats.head == 150
    text = slow.stdout.decode()
    assert "DropNotice: " in text, text
    dropped_lines = [x for x in text.splitlines()
                     if x.startswith("broadcaster_events_dropped_total")]
    assert any('namespace="slow-demo"' in x for x in dropped_lines), text

"""`broadcaster publish` and `broadcaster subscribe` run as real processes against a
Server started in the test."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream
from prometheus_client import CollectorRegistry

from broadcaster import HubConfig, NamespaceConfig
from broadcaster.containerd.events import task_pb2

from .._loops import ASYNCIO

try:
    from broadcaster.grpc import Server, ServerConfig  # type: ignore[attr-defined]
except ImportError:
    from broadcaster.grpc._server import Server, ServerConfig

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

CLI = [sys.executable, "-m", "broadcaster._cli"]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    hub = HubConfig(namespaces={"tiny": NamespaceConfig(max_payload_bytes=8)})
    config = ServerConfig(listen=["127.0.0.1:0"], hub=hub, grace_period=0.5)
    async with Server(config, registry=CollectorRegistry()) as srv:
        yield srv


async def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(30):
        return await anyio.run_process([*CLI, *args], input=stdin, check=False)


class Watcher:
    """A running `broadcaster subscribe`, its stdout lines collected."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._stdout = TextReceiveStream(process.stdout)  # type: ignore[arg-type]
        self._stderr = TextReceiveStream(process.stderr)  # type: ignore[arg-type]
        self._buffer = ""

    async def wait_subscribed(self) -> None:
        text = ""
        with anyio.fail_after(15):
            async for chunk in self._stderr:
                text += chunk
                if "subscribed" in text:
                    return
        raise AssertionError(f"no subscription: {text}")

    async def read_all(self) -> list[str]:
        with anyio.fail_after(15):
            async for chunk in self._stdout:
                self._buffer += chunk
            assert await self.process.wait() is not None
        return self._buffer.splitlines()


async def watch(address: str, *args: str) -> Watcher:
    process = await anyio.open_process([*CLI, "subscribe", "--address", address, *args])
    return Watcher(process)


async def test_publish_json_as_containerd_type_and_watch_ctr_lines(server: Any) -> None:
    address = server.addresses[0]
    watcher = await watch(address, "--namespace", "k8s", "--count", "2")
    async with watcher.process:
        await watcher.wait_subscribed()
        exit_json = '{"container_id":"c1","pid":42,"exit_status":137}'
        first = await cli("publish", "--address", address, "--namespace", "k8s",
                          "--topic", "/tasks/exit", "--json", exit_json,
                          "--type", "containerd.events.TaskExit", "--label", "app=web")
        second = await cli("publish", "--address", address, "-n", "k8s", "-t", "/raw",
                           "--json", '{"a": [1, 2]}')
        lines = await watcher.read_all()
    assert (first.returncode, first.stdout) == (0, b"1\n"), first.stderr
    assert (second.returncode, second.stdout) == (0, b"2\n"), second.stderr
    assert watcher.process.returncode == 0
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        ' UTC k8s /tasks/exit {"container_id":"c1","pid":42,"exit_status":137,'
        '"exited_at":"0001-01-01T00:00:00Z"}'
    )
    assert lines[1].endswith(' UTC k8s /raw {"a": [1, 2]}')
    stored = server.hub.statistics().namespaces["k8s"]
    assert stored.published == 2


async def test_subscribe_filters_on_event_fields(server: Any) -> None:
    """--filter event.<field>: containerd event types (published with --json --type) and
    JSON payloads (published with --json alone)."""
    address = server.addresses[0]
    watcher = await watch(address, "--count", "2",
                          "--filter", 'topic=="/tasks/exit",event.container_id==c2',
                          "--filter", "event.a.1==2")
    async with watcher.process:
        await watcher.wait_subscribed()
        for cid in ("c1", "c2", "c3"):
            done = await cli("publish", "--address", address, "-n", "k8s", "-t", "/tasks/exit",
                             "--json", f'{{"container_id":"{cid}"}}',
                             "--type", "containerd.events.TaskExit")
            assert done.returncode == 0, done.stderr
        for body in ('{"a": [1, 3]}', '{"a": [1, 2]}'):
            done = await cli("publish", "--address", address, "-n", "k8s", "-t", "/raw",
                             "--json", body)
            assert done.returncode == 0, done.stderr
        lines = await watcher.read_all()
    assert watcher.process.returncode == 0
    assert [line.split(" UTC ", 1)[1] for line in lines] == [
        'k8s /tasks/exit {"container_id":"c2","exited_at":"0001-01-01T00:00:00Z"}',
        'k8s /raw {"a": [1, 2]}',
    ]


async def test_subscribe_json_replay_and_resync_lines(server: Any) -> None:
    address = server.addresses[0]
    msg = task_pb2.TaskStart(container_id="c9", pid=7)
    await server.hub.publish("ns", "/tasks/start", msg.SerializeToString(),
                             type_url="containerd.events.TaskStart")
    done = await cli("publish", "--address", address, "-n", "ns", "-t", "/d", "--data", "hé")
    piped = await cli("publish", "--address", address, "-n", "ns", "-t", "/s", stdin=b"\x00\x01")
    assert [done.stdout, piped.stdout] == [b"2\n", b"3\n"]
    replay = await cli("subscribe", "--address", address, "-n", "ns", "--since", "0",
                       "--json", "--count", "3")
    assert replay.returncode == 0, replay.stderr
    objects = [json.loads(line) for line in replay.stdout.decode().splitlines()]
    assert [o["kind"] for o in objects] == ["event"] * 3
    assert [o["sequence"] for o in objects] == [1, 2, 3]
    assert objects[0]["event"] == {"container_id": "c9", "pid": 7}
    assert objects[0]["type_url"] == "containerd.events.TaskStart"
    assert objects[1]["payload"] == "aMOp"  # base64 of the UTF-8 bytes of "hé"
    assert objects[2]["payload"] == "AAE="
    resync = await cli("subscribe", "--address", address, "-n", "ns", "--since", "1",
                       "--epoch", "old-epoch", "--count", "1")
    lines = resync.stdout.decode().splitlines()
    assert lines[0] == (f"# RESYNC ns requested_since=1 oldest_available=1 "
                        f"reason=epoch_changed epoch={server.hub.epoch}")
    assert " ns /tasks/start " in lines[1] and len(lines) == 2


async def test_publish_errors_name_the_field(server: Any) -> None:
    address = server.addresses[0]
    base = ["publish", "--address", address, "-n", "tiny"]
    cases = {
        "topic": await cli(*base, "-t", "no-slash", "--data", "x"),
        "payload": await cli(*base, "-t", "/t", "--data", "x" * 9),
        "json.exit_status": await cli(*base, "-t", "/t", "--json", '{"exit_status": "x"}',
                                      "--type", "containerd.events.TaskExit"),
        "type": await cli(*base, "-t", "/t", "--json", "{}", "--type", "no.such.Type"),
        "--json": await cli(*base, "-t", "/t", "--json", "{nope"),
        "--label": await cli(*base, "-t", "/t", "--data", "x", "--label", "novalue"),
    }
    for field, result in cases.items():
        assert result.returncode == 1, (field, result)
        assert result.stdout == b""
        assert f"{field}: " in result.stderr.decode(), (field, result.stderr)
    both = await cli(*base, "-t", "/t", "--data", "x", "--json", "{}")
    assert both.returncode == 2 and b"not allowed with" in both.stderr


async def test_subscribe_rejected_filter_and_sigterm(server: Any) -> None:
    address = server.addresses[0]
    bad = await cli("subscribe", "--address", address, "--filter", "topic==")
    assert bad.returncode == 1 and b"filters[0]" in bad.stderr
    watcher = await watch(address, "--policy", "drop_oldest", "--max-events", "10")
    async with watcher.process:
        await watcher.wait_subscribed()
        watcher.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await watcher.process.wait() == 0


@pytest.mark.parametrize("command", ["publish", "subscribe"])
async def test_help_lists_every_option(command: str) -> None:
    result = await cli(command, "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    options = {
        "publish": ["--address", "--namespace", "--topic", "--json", "--type", "--data",
                    "--file", "--label", "application/json", "stdin"],
        "subscribe": ["--address", "--namespace", "--filter", "--since", "--json",
                      "--policy", "--max-events", "--count", "SIGTERM", "# DROPPED"],
    }[command]
    for option in options:
        assert option in text, option

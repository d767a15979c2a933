"""The product's server on a unix socket, for tests of the containerd API (and a bare
``grpc.aio`` server with only :func:`add_containerd_services`, for servicer options the
server does not expose)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import anyio
import anyio.abc
import grpc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client.registry import CollectorRegistry

from broadcaster import Broadcaster, HubConfig
from broadcaster.grpc import Server, ServerConfig
from broadcaster.grpc._containerd import add_containerd_services

#: sun_path is 108 bytes; pytest's tmp_path can be longer than that.
_MAX_SOCKET_PATH = 100


def socket_path(tmp_path: Path) -> str:
    """A unix socket path in *tmp_path*, or in a short temporary directory if too long."""
    path = str(tmp_path / "c.sock")
    if len(path) <= _MAX_SOCKET_PATH:
        return path
    return str(Path(tempfile.mkdtemp(prefix="bc-")) / "c.sock")  # pragma: no cover


@asynccontextmanager
async def containerd_server(
    path: str, config: HubConfig | None = None, **server_options: Any
) -> AsyncIterator[Broadcaster]:
    """Run the broadcaster :class:`Server` (every service) on the unix socket *path*,
    with :class:`ServerConfig` fields *server_options*; yield the hub behind it."""
    server_config = ServerConfig(
        listen=[f"unix:{path}"], metrics_listen=None, hub=config or HubConfig(),
        grace_period=1.0, **server_options,
    )
    async with Server(server_config, registry=CollectorRegistry()) as server:
        yield server.hub


@asynccontextmanager
async def bare_containerd_server(
    path: str, config: HubConfig | None = None, **options: Any
) -> AsyncIterator[Broadcaster]:
    """A ``grpc.aio`` server with only the containerd services, built with *options*
    (see :func:`add_containerd_services`), on the unix socket *path*."""
    async with Broadcaster(config or HubConfig()) as hub:
        server = grpc.aio.server()
        add_containerd_services(server, hub, **options)
        if server.add_insecure_port(f"unix:{path}") == 0:  # pragma: no cover
            raise RuntimeError(f"cannot listen on {path}")
        await server.start()
        try:
            yield hub
        finally:
            await server.stop(grace=None)


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 10.0, what: str = ""
) -> None:
    """Poll *predicate* (a cheap in-process check) until true; fail after *within* s."""
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.005)
    assert predicate(), what


def binary(name: str) -> str:
    """The path of a required program; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed: these interop tests need Debian's containerd "
            "package (apt-get install containerd), which provides ctr and containerd"
        )
    return path


class CtrEvents:
    """A running ``ctr events``: read the lines it prints."""

    def __init__(self, process: anyio.abc.Process, stderr: Path) -> None:
        self.process = process
        self._stdout = BufferedByteReceiveStream(process.stdout)  # type: ignore[arg-type]
        self._stderr = stderr

    async def line(self, *, within: float = 10.0) -> str:
        """The next stdout line, without its newline."""
        with anyio.fail_after(within):
            data = await self._stdout.receive_until(b"\n", 1 << 20)
        return data.decode()

    async def lines(self, count: int, *, within: float = 10.0) -> list[str]:
        with anyio.fail_after(within):
            return [await self.line() for _ in range(count)]

    async def rest(self, *, within: float = 10.0) -> bytes:
        """Everything left on stdout until ctr exits."""
        out = bytearray()
        with anyio.fail_after(within):
            while True:
                try:
                    out += await self._stdout.receive()
                except anyio.EndOfStream:
                    return bytes(out)

    def stderr(self) -> str:
        return self._stderr.read_text()


@asynccontextmanager
async def ctr_events(
    hub: Broadcaster,
    address: str,
    *filters: str,
    tmp_path: Path,
    global_args: tuple[str, ...] = (),
) -> AsyncIterator[CtrEvents]:
    """Run ``ctr --address ADDRESS GLOBAL_ARGS... events FILTERS...``; yield once its
    Subscribe is registered with *hub*; terminate it on exit."""
    before = hub.subscription_count
    stderr = tmp_path / f"ctr-{before}.err"
    with stderr.open("wb") as err:
        process = await anyio.open_process(
            [binary("ctr"), "--address", address, *global_args, "events", *filters],
            stdin=subprocess.DEVNULL, stderr=err,
            env=_client_env(),
        )
    try:
        ctr = CtrEvents(process, stderr)
        await wait_until(
            lambda: hub.subscription_count > before or process.returncode is not None,
            what="ctr subscribed",
        )
        assert process.returncode is None, f"ctr exited early: {ctr.stderr()}"
        yield ctr
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:  # pragma: no cover
                process.kill()
                await process.wait()
            await process.aclose()


def _client_env() -> dict[str, str]:
    """The environment without settings that would change what ctr does (newer ctr
    builds call Introspection unless deprecation warnings are suppressed)."""
    drop = {
        "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS"
    }
    return {k: v for k, v in os.environ.items() if k not in drop}


async def run(*argv: str, stdin: bytes = b"", within: float = 20.0) -> CompletedProcess[bytes]:
    """Run a program to completion (bounded); return its exit code and output."""
    with anyio.fail_after(within):
        return await anyio.run_process(argv, input=stdin, check=False, env=_client_env())

"""Connection limits over real sockets: the TCP connection quota and the unix socket that
still answers at it, idle and silent connections closed, RPCs bounded per client
address, the open-file limit raised by `broadcaster serve`."""

from __future__ import annotations

import contextlib
import re
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broadcaster.grpc import Server
from broadcaster.grpc._fdlimit import fit_connections
from broadcaster.grpc._peers import PeerLimiter, peer_address

from ._helpers import add, publish, read_kind, stub

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

_SETTINGS, _GOAWAY = 4, 7


async def _frame(conn: anyio.abc.SocketStream, within: float = 5.0) -> tuple[int, bytes]:
    """Read one HTTP/2 frame the server sent: (type, payload)."""
    buffer = b""
    with anyio.fail_after(within):
        while len(buffer) < 9 or len(buffer) < 9 + int.from_bytes(buffer[:3], "big"):
            buffer += await conn.receive()
    length = int.from_bytes(buffer[:3], "big")
    return buffer[3], buffer[9:9 + length]


async def _closed(conn: anyio.abc.SocketStream, within: float) -> list[int]:
    """Read until the server closes the connection; return the frame types it sent."""
    data = b""
    with anyio.fail_after(within):
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                data += await conn.receive()
    types = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        types.append(data[3])
        data = data[9 + length:]
    return types


@contextlib.asynccontextmanager
async def _idle_connections(address: str, count: int) -> AsyncIterator[
        list[anyio.abc.SocketStream]]:
    """*count* TCP connections that send nothing, each accepted by the server (it sent
    its SETTINGS frame on each)."""
    host, _, port = address.rpartition(":")
    async with contextlib.AsyncExitStack() as stack:
        conns = []
        for _ in range(count):
            conn = await stack.enter_async_context(await anyio.connect_tcp(host, int(port)))
            assert (await _frame(conn))[0] == _SETTINGS
            conns.append(conn)
        yield conns


async def _health(address: str, deadline: float = 5.0) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        return await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=deadline)


async def test_at_the_connection_limit_tcp_refuses_and_the_unix_socket_answers(
        make_server: Any) -> None:
    server: Server = await make_server(max_connections=6)
    tcp, unix = server.addresses
    assert server.max_connections == 6
    async with _idle_connections(tcp, 6) as conns:
        # A new TCP connection is closed at once: the client fails fast, it does not hang.
        with anyio.fail_after(10):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _health(tcp)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # The unix socket has no quota: Health, publish and subscribe work.
        assert (await _health(unix)).status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(unix) as channel:
            call = stub(channel).Subscribe()
            await call.write(add("s", ("default",)))
            assert (await read_kind(call, "add_result")).ok
            assert (await publish(channel, "default", "/at-limit")).sequence == 1
            assert (await read_kind(call, "event_batch")).deliveries[0].event.topic == \
                "/at-limit"
            call.cancel()
        # One connection closed frees one place.
        await conns[0].aclose()
        with anyio.fail_after(10):
            while True:
                try:
                    await _health(tcp, deadline=2)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    await anyio.sleep(0.05)


async def test_idle_connections_are_closed_with_goaway(make_server: Any) -> None:
    server = await make_server(max_connection_idle=0.3)
    async with _idle_connections(server.addresses[0], 3) as conns:
        for conn in conns:
            assert _GOAWAY in await _closed(conn, within=10)


async def test_a_connection_that_never_speaks_http2_is_closed(make_server: Any) -> None:
    server = await make_server(max_connection_idle=None, handshake_timeout=0.3)
    async with _idle_connections(server.addresses[0], 1) as [conn]:
        assert _GOAWAY in await _closed(conn, within=10)


async def test_a_connection_with_an_open_rpc_is_not_idle(make_server: Any) -> None:
    server = await make_server(max_connection_idle=0.2)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("s", ("default",)))
        assert (await read_kind(call, "add_result")).ok
        # An idle connection opened after the stream is closed: the idle period has
        # passed for the stream's connection too.
        async with _idle_connections(server.addresses[0], 1) as [idle]:
            assert _GOAWAY in await _closed(idle, within=10)
        async with grpc.aio.insecure_channel(server.addresses[1]) as other:
            await publish(other, "default", "/still-here")
        batch = await read_kind(call, "event_batch")
        assert batch.deliveries[0].event.topic == "/still-here"
        call.cancel()


async def test_open_rpcs_are_bounded_per_client_address(make_server: Any) -> None:
    server: Server = await make_server(max_rpcs_per_peer=3)
    tcp, unix = server.addresses
    async with grpc.aio.insecure_channel(tcp) as one, grpc.aio.insecure_channel(tcp) as two:
        calls = []
        for i, channel in enumerate((one, two, one)):
            call = stub(channel).Subscribe()
            await call.write(add(f"s{i}", ("default",)))
            assert (await read_kind(call, "add_result")).ok
            calls.append(call)
        # A fourth RPC from the same address, on either connection, is refused...
        for channel in (one, two):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await publish(channel, "default", "/x")
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_rpcs_per_peer" in (info.value.details() or "")
            assert "ipv4:127.0.0.1" in (info.value.details() or "")
        fourth = stub(two).Subscribe()
        assert await fourth.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # ... the unix socket is not bounded by it ...
        async with grpc.aio.insecure_channel(unix) as local:
            assert (await publish(local, "default", "/local")).sequence == 1
        # ... and the open streams are unaffected.
        for call in calls:
            batch = await read_kind(call, "event_batch")
            assert batch.deliveries[0].event.topic == "/local"
        assert server.telemetry.rejected["peer_rpc_limit"] == 3
        calls[0].cancel()
        with anyio.fail_after(10):  # the server learns of the cancel asynchronously
            while True:
                try:
                    await publish(one, "default", "/after")
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    await anyio.sleep(0.02)
        for call in calls[1:]:
            call.cancel()


async def test_peer_address_drops_the_port() -> None:
    assert peer_address("ipv4:10.0.0.7:51234") == "ipv4:10.0.0.7"
    assert peer_address("ipv6:[::1]:5000") == "ipv6:[::1]"
    assert peer_address("ipv6:%5B::1%5D:5000") == "ipv6:%5B::1%5D"
    assert peer_address("unix:/run/b.sock") == "unix:/run/b.sock"


async def test_peer_limiter_counts_and_forgets() -> None:
    limiter = PeerLimiter(2)
    assert limiter.acquire("a") and limiter.acquire("a") and not limiter.acquire("a")
    assert limiter.acquire("b")
    limiter.release("a")
    assert limiter.acquire("a") and not limiter.acquire("a")
    for _ in range(2):
        limiter.release("a")
    limiter.release("b")
    assert limiter.addresses == 0


@pytest.mark.parametrize(
    ("configured", "tcp", "reserve", "limit", "expected"),
    [
        (4096, 1, 1024, 524288, 4096),    # plenty of descriptors
        (4096, 1, 1024, 2048, 1024),      # reserve at most half the limit
        (4096, 2, 1024, 20000, 4096),
        (4096, 2, 256, 4096, 1920),       # shared by two TCP addresses
        (None, 1, 1024, 20000, 18976),    # no configured bound: the limit still applies
        (None, 1, 1024, None, None),
        (10, 0, 1024, 100, 10),           # no TCP address: nothing to fit
    ],
)
async def test_fit_connections(configured: int | None, tcp: int, reserve: int, limit: int | None,
                         expected: int | None) -> None:
    assert fit_connections(configured, tcp, reserve, limit) == expected


_WITH_LIMIT = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[3:]])"
)


def _serve_with_limits(soft: int, hard: int, tmp_path: Path) -> str:
    """Run `broadcaster serve` with RLIMIT_NOFILE (soft, hard) until it serves; return
    its log."""
    command = [sys.executable, "-c", _WITH_LIMIT, str(soft), str(hard), "-m",
               "broadcaster._cli", "serve", "--listen", "127.0.0.1:0",
               "--listen", f"unix:{tmp_path / 'b.sock'}"]
    lines = []
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:  # bounded by the test's timeout
                lines.append(line)
                if "serving" in line:
                    break
        finally:
            process.terminate()
            process.wait(10)
    return "".join(lines)


async def test_serve_raises_the_open_file_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 512:
        pytest.fail(f"the hard open-file limit {hard} is too low for this test")
    logs = await anyio.to_thread.run_sync(_serve_with_limits, 512, hard, tmp_path)
    assert f"open-file limit raised from=512 to={hard}" in logs
    assert f"max_connections={min(4096, hard - min(1024, hard // 2))}" in logs


async def test_serve_fits_the_connection_quota_under_a_low_hard_limit(tmp_path: Path) -> None:
    logs = await anyio.to_thread.run_sync(_serve_with_limits, 600, 600, tmp_path)
    assert "open-file limit soft=600 (already the hard limit)" in logs
    assert re.search(r"connection quota lowered.* max_connections=300 configured=4096", logs)
    assert "serving" in logs and "max_connections=300" in logs

"""Safe by default: unix sockets are created 0600 whatever the umask (mode and group
configurable), and `broadcaster serve` refuses a non-loopback TCP listener without TLS
or authentication unless --insecure."""

from __future__ import annotations

import grp
import os
import stat
import sys
from pathlib import Path

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broadcaster._auth import SecurityConfig
from broadcaster.grpc import Server

from .conftest import MakeServer, server_config

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop"),
              pytest.mark.memory_only("sockets, listeners and start-up checks: no log involved")]


def mode_of(address: str) -> int:
    return stat.S_IMODE(os.stat(address[len("unix:"):]).st_mode)


async def test_unix_sockets_are_0600_whatever_the_umask(make_server: MakeServer) -> None:
    old = os.umask(0)
    try:
        server = await make_server()
    finally:
        os.umask(old)
    unix = server.addresses[1]
    assert mode_of(unix) == 0o600
    async with grpc.aio.insecure_channel(unix) as channel:  # the owner gets in
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_socket_mode_and_group_are_configurable(make_server: MakeServer) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    server = await make_server(security=SecurityConfig(socket_mode=0o660, socket_group=group))
    unix = server.addresses[1]
    assert mode_of(unix) == 0o660
    assert os.stat(unix[len("unix:"):]).st_gid == os.getgid()


async def test_an_unknown_socket_group_is_refused_at_start(tmp_path: Path) -> None:
    config = server_config(tmp_path, security=SecurityConfig(socket_group="no-such-group-x"))
    with pytest.raises(OSError, match=r"security\.socket_group: no group named "
                                      r"'no-such-group-x'"):
        async with Server(config):
            pass


async def test_serve_refuses_a_non_loopback_listener_without_tls_or_auth() -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "broadcaster._cli", "serve", "--listen", "0.0.0.0:0"],
        check=False)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "listen[0]: '0.0.0.0:0' is not a loopback address" in message
    assert "--tls-cert" in message and "--token-file" in message and "--insecure" in message

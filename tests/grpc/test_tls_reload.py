"""TLS credentials with files reloaded without a restart, over real connections (a
grpc.aio server with the Health service): a new server certificate or client CA takes
effect at the next handshake; a bad file is refused and the old ones stay in force."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from broadcaster.grpc._tls import CertificateError, ServerCertificates

from .._certs import Authority, Pair

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path, Authority,
                                                            ServerCertificates]]:
    ca1 = Authority(tmp_path / "ca1")
    pair = ca1.server()
    live = tmp_path / "live"
    live.mkdir()
    for src, dst in ((pair.cert_file, "server.crt"), (pair.key_file, "server.key"),
                     (ca1.ca_file, "client-ca.pem")):
        shutil.copy(src, live / dst)
    certs = ServerCertificates(str(live / "server.crt"), str(live / "server.key"),
                               str(live / "client-ca.pem"))
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0",
                                  certs.credentials(client_certificates=True))
    await server.start()
    try:
        yield port, live, ca1, certs
    finally:
        await server.stop(0)


async def check(port: int, trust: bytes, client: Pair) -> grpc.StatusCode:
    creds = grpc.ssl_channel_credentials(trust, client.key, client.cert)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    st = path.stat()
    os.utime(tmp, ns=(st.st_mtime_ns + 1_000_000_000,) * 2)
    tmp.replace(path)


async def test_a_new_server_certificate_and_client_ca_take_effect_without_restart(
        tls_server: tuple[int, Path, Authority, ServerCertificates], tmp_path: Path) -> None:
    port, live, ca1, certs = tls_server
    client1 = ca1.client("client.example")
    assert await check(port, ca1.ca_pem, client1) is grpc.StatusCode.OK

    # rotate to a server certificate and a client CA of another authority
    ca2 = Authority(tmp_path / "ca2")
    new = ca2.server()
    replace(live / "server.key", new.key)
    replace(live / "server.crt", new.cert)
    replace(live / "client-ca.pem", ca2.ca_pem)
    client2 = ca2.client("client.example")
    assert await check(port, ca2.ca_pem, client2) is grpc.StatusCode.OK
    assert certs.reloads == 1
    # the old server certificate is no longer presented, the old client CA no longer trusted
    assert await check(port, ca1.ca_pem, client2) is grpc.StatusCode.UNAVAILABLE
    assert await check(port, ca2.ca_pem, client1) is grpc.StatusCode.UNAVAILABLE


async def test_a_bad_file_is_refused_and_the_old_certificates_stay(
        tls_server: tuple[int, Path, Authority, ServerCertificates], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    port, live, ca1, certs = tls_server
    client1 = ca1.client("client.example")
    other = Authority(tmp_path / "other").server()
    with caplog.at_level("ERROR", logger="broadcaster.security"):
        replace(live / "server.key", other.key)  # a key that does not match the certificate
        for _ in range(3):
            assert await check(port, ca1.ca_pem, client1) is grpc.StatusCode.OK
    assert certs.failures == 1 and certs.reloads == 0
    (line,) = [r.getMessage() for r in caplog.records]
    assert "certificate files refused, the previous ones stay in force" in line
    # the matching certificate follows: the pair is taken
    replace(live / "server.crt", other.cert)
    assert await check(port, ca1.ca_pem, client1) is grpc.StatusCode.UNAVAILABLE
    assert certs.reloads == 1


def test_unusable_files_are_refused_at_start(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    pair = ca.server()
    with pytest.raises(CertificateError, match=r"^tls_cert_file: .* are not a PEM certificate "
                                               r"chain and its private key"):
        ServerCertificates(str(pair.cert_file), str(ca.ca_file))
    with pytest.raises(CertificateError, match=r"^tls_client_ca_file: .* is not a file of PEM "
                                               r"CA certificates"):
        ServerCertificates(str(pair.cert_file), str(pair.key_file), str(tmp_path / "missing"))

"""The client commands with TLS, client certificates and tokens, as real processes
against a Server started in the test (trustme certificates)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import grpc
import pytest
from anyio.streams.text import TextReceiveStream
from prometheus_client import CollectorRegistry

from broadcaster._auth import ListenerSecurity, SecurityConfig, new_token, token_line
from broadcaster.grpc import Server, ServerConfig
from broadcaster.v1 import broadcaster_pb2 as pb
from broadcaster.v1 import broadcaster_pb2_grpc as pb_grpc

from .._certs import Authority
from .._loops import ASYNCIO

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

CLI = [sys.executable, "-m", "broadcaster._cli"]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


@dataclass
class Secured:
    server: Server
    ca: Authority
    token_file: Path
    mtls: list[str]  # --address and TLS options of the mTLS listener
    token: list[str]  # --address and --token-file of the token listener


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    ca = Authority(tmp_path / "pki")
    pair = ca.server()
    client = ca.client("cli.example")
    token = new_token()
    token_file = tmp_path / "cli.token"
    token_file.write_text(token + "\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line(token, "cli-token") + "\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[identities."cli.example"]\nadmin = ["*"]\n'
                      '[identities.cli-token]\nsubscribe = ["k8s.io"]\nstats = ["k8s.io"]\n')
    security = SecurityConfig(
        policy_file=str(policy), token_file=str(tokens), tls_cert_file=str(pair.cert_file),
        tls_key_file=str(pair.key_file), tls_client_ca_file=str(ca.ca_file),
        listeners={"127.0.0.2:0": ListenerSecurity(auth="token")})
    config = ServerConfig(listen=["127.0.0.1:0", "127.0.0.2:0"], security=security,
                          grace_period=0.5)
    async with Server(config, registry=CollectorRegistry()) as server:
        yield Secured(
            server, ca, token_file,
            ["--address", server.addresses[0], "--tls-ca", str(ca.ca_file),
             "--tls-cert", str(client.cert_file), "--tls-key", str(client.key_file)],
            ["--address", server.addresses[1], "--token-file", str(token_file)])


async def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(30):
        return await anyio.run_process([*CLI, *args], check=False)


async def test_publish_subscribe_stats_and_health_with_certificates_and_tokens(
        secured: Secured) -> None:
    async with anyio.create_task_group() as tg:
        results: list[subprocess.CompletedProcess[bytes]] = []

        async def subscribe() -> None:
            results.append(await cli("subscribe", *secured.token, "--namespace", "k8s.io",
                                     "--count", "1", "--json"))

        tg.start_soon(subscribe)
        with anyio.fail_after(20):
            while secured.server.hub.subscription_count == 0:
                await anyio.sleep(0.02)
        published = await cli("publish", *secured.mtls, "--namespace", "k8s.io",
                              "--topic", "/tasks/exit", "--data", "x")
        assert (published.returncode, published.stdout) == (0, b"1\n"), published.stderr
    [received] = results
    assert received.returncode == 0, received.stderr
    assert json.loads(received.stdout.splitlines()[0])["topic"] == "/tasks/exit"
    stats = await cli("stats", *secured.token, "--json")
    assert stats.returncode == 0, stats.stderr
    assert [ns["namespace"] for ns in json.loads(stats.stdout)["namespaces"]] == ["k8s.io"]
    health = await cli("health", *secured.mtls)
    assert (health.returncode, health.stdout) == (0, b"SERVING\n")


async def test_refusals_are_reported(secured: Secured) -> None:
    denied = await cli("publish", *secured.token, "--namespace", "k8s.io", "--topic", "/x",
                       "--data", "x")
    assert denied.returncode == 1
    assert (b"PERMISSION_DENIED: namespace: identity 'cli-token' lacks permission 'publish' "
            b"on namespace 'k8s.io'") in denied.stderr
    no_token = await cli("stats", "--address", secured.server.addresses[1])
    assert no_token.returncode == 1 and b"UNAUTHENTICATED" in no_token.stderr
    no_cert = await cli("stats", "--address", secured.server.addresses[0],
                        "--tls-ca", str(secured.ca.ca_file), "--timeout", "3")
    assert no_cert.returncode == 1 and b"UNAVAILABLE" in no_cert.stderr


async def test_sighup_reloads_the_policy_of_a_running_server(tmp_path: Path) -> None:
    """``broadcaster serve`` survives SIGHUP and applies the policy file it rereads (the
    periodic check is an hour away: the signal did it); a bad file is refused (logged)
    and the server goes on with the one in force."""
    from ..deploy._files import running

    policy = tmp_path / "policy.toml"
    policy.write_text('[identities.local]\npublish = ["a"]\ncreate = ["a", "b"]\n')
    config = tmp_path / "broadcaster.toml"
    config.write_text(f'[security]\npolicy_file = "{policy}"\nreload_interval = 3600.0\n')
    socket = f"unix:{tmp_path / 's.sock'}"
    async with running([*CLI, "serve", "--config", str(config), "--listen", socket]) as server, \
            grpc.aio.insecure_channel(socket) as channel:
        stub = pb_grpc.BroadcasterStub(channel)

        async def publish(namespace: str) -> grpc.StatusCode:
            try:
                await stub.Publish(pb.PublishRequest(namespace=namespace, topic="/x"),
                                   timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        async def logged(text: str) -> None:
            assert server.process.stderr is not None
            with anyio.fail_after(20):
                async for chunk in TextReceiveStream(server.process.stderr):
                    server.log.append(chunk)
                    if text in "".join(server.log):
                        return

        assert await publish("a") is grpc.StatusCode.OK
        assert await publish("b") is grpc.StatusCode.PERMISSION_DENIED
        policy.write_text('[identities.local]\npublish = ["a", "b"]\ncreate = ["a", "b"]\n')
        server.process.send_signal(signal.SIGHUP)
        await logged("policy file reloaded")
        assert await publish("b") is grpc.StatusCode.OK
        policy.write_text('[identities.local]\npublish = ["not a namespace"]\n')
        server.process.send_signal(signal.SIGHUP)
        await logged("policy file refused, the previous one stays in force")
        assert await publish("b") is grpc.StatusCode.OK
        assert server.process.returncode is None

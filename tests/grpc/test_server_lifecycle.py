"""Health, reflection (real grpcurl), metrics over HTTP, graceful stop and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import add, publish, read_kind, stub
from .conftest import server_config

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = ROOT / ".venv" / "bin" / "grpcurl"


async def _grpcurl(*args: str) -> str:
    result = await anyio.run_process([str(GRPCURL), "-plaintext", *args], check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.mark.interop
@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl not installed")
async def test_grpcurl_lists_describes_and_calls(server: Server) -> None:
    address = server.addresses[0]
    with anyio.fail_after(30):
        services = (await _grpcurl(address, "list")).split()
        for name in ("broadcaster.v1.Broadcaster", "containerd.services.events.v1.Events",
                     "grpc.health.v1.Health"):
            assert name in services
        described = await _grpcurl(address, "describe", "broadcaster.v1.Broadcaster")
        assert "rpc Subscribe ( stream .broadcaster.v1.SubscribeRequest )" in described
        await _grpcurl("-d", '{"namespace": "default", "topic": "/a"}', address,
                       "broadcaster.v1.Broadcaster/Publish")
        stats = json.loads(await _grpcurl(address, "broadcaster.v1.Broadcaster/Stats"))
        assert stats["namespaces"][0]["namespace"] == "default"
        assert stats["namespaces"][0]["published"] == "1"
        for service in ("", "broadcaster.v1.Broadcaster"):
            health = json.loads(await _grpcurl(
                "-d", json.dumps({"service": service}), address, "grpc.health.v1.Health/Check"))
            assert health == {"status": "SERVING"}


async def test_health_turns_not_serving_on_stop(make_server: Any) -> None:
    server = await make_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        with anyio.fail_after(10):
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.stop)
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()


async def test_health_lists_every_service(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[1]) as channel:
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    assert set(listed.statuses) == {"", *server.service_names}
    assert {s.status for s in listed.statuses.values()} == {
        health_pb2.HealthCheckResponse.SERVING}


async def test_metrics_http_and_healthz(make_server: Any) -> None:
    registry = CollectorRegistry()
    server = await make_server(metrics_listen="127.0.0.1:0", registry=registry)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        await publish(channel, "default", "/x")
        with pytest.raises(grpc.aio.AioRpcError):
            await publish(channel, "", "/x")
        call = stub(channel).Subscribe()
        await call.write(add("a", ("Bad!",)))
        assert not (await read_kind(call, "add_result")).ok

        def get(path: str) -> tuple[int, str]:
            url = f"http://{server.metrics_address}{path}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()

        with anyio.fail_after(10):
            status, text = await anyio.to_thread.run_sync(get, "/metrics")
        assert status == 200
        assert 'broadcaster_events_published_total{namespace="default"} 1.0' in text
        assert 'broadcaster_grpc_streams_open{method="/broadcaster.v1.Broadcaster/Subscribe"} 1.0' \
            in text
        assert ('broadcaster_grpc_requests_total{code="INVALID_ARGUMENT",'
                'method="/broadcaster.v1.Broadcaster/Publish"} 1.0') in text
        assert 'broadcaster_grpc_rejected_total{reason="invalid_argument"} 2.0' in text
        assert "broadcaster_heartbeat_stride 1.0" in text  # one stream: under the budget
        assert "broadcaster_grpc_stream_writes_waiting 0.0" in text
        assert "broadcaster_grpc_stream_writes_in_flight " in text
        assert await anyio.to_thread.run_sync(get, "/healthz") == (200, "ok\n")
        # Collecting on the loop's own thread works too.
        assert b"broadcaster_uptime_seconds" in generate_latest(registry)
        call.cancel()


async def test_stop_ends_an_idle_publish_stream_with_unavailable(make_server: Any) -> None:
    """... and a containerd Subscribe stream: both APIs say it the same way."""
    server = await make_server(grace_period=30.0)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).PublishStream()
        await call.write(pb.PublishStreamRequest(batch_id=1, events=[
            pb.PublishRequest(namespace="default", topic="/x")]))
        assert list((await call.read()).sequences) == [1]
        envelopes = events_pb2_grpc.EventsStub(channel).Subscribe(
            events_pb2.SubscribeRequest())
        with anyio.fail_after(10):
            while server.hub.subscription_count < 1:
                await anyio.sleep(0.005)
        with anyio.fail_after(10):  # far below the grace period: nothing waits for it
            await server.stop()
        for ended in (call, envelopes):
            assert (await ended.code(), await ended.details()) == (
                grpc.StatusCode.UNAVAILABLE, "server: shutting down")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await publish(channel, "default", "/late")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_bind_failure_is_reported_and_leaves_nothing_running(
        tmp_path: Path, server: Server) -> None:
    failed = Server(server_config(tmp_path, listen=[server.addresses[0]]),
                    registry=CollectorRegistry())
    with pytest.raises(OSError, match=r"listen\[0\]"):  # as it is, not in a group
        await failed.__aenter__()
    _assert_over(failed)


def _assert_over(server: Server) -> None:
    """The server stopped and its hub was left: its tasks ended, nothing registered."""
    assert server._closed.is_set() and not server.serving
    with pytest.raises(anyio.ClosedResourceError):
        server.hub.task_group  # noqa: B018
    assert server.hub.subscription_count == 0


async def test_an_error_in_the_servers_block_leaves_the_hub_and_comes_out_as_it_is(
        tmp_path: Path) -> None:
    server = Server(server_config(tmp_path), registry=CollectorRegistry())
    with pytest.raises(KeyError, match="mine"):
        async with server:
            async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
                call = stub(channel).Subscribe()
                await call.write(add("a"))
                await read_kind(call, "add_result")
                raise KeyError("mine")
    _assert_over(server)


async def test_a_cancelled_server_block_stops_the_server_and_the_hub(tmp_path: Path) -> None:
    server = Server(server_config(tmp_path), registry=CollectorRegistry())
    with anyio.CancelScope() as scope:
        async with server:
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    _assert_over(server)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "broadcaster._cli", *args]


async def _wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with anyio.fail_after(30):
            while True:
                try:
                    response = await health.Check(
                        health_pb2.HealthCheckRequest(service=""), wait_for_ready=True,
                        timeout=5)
                except grpc.aio.AioRpcError:
                    await anyio.sleep(0.05)
                    continue
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_cli_serve_stops_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    sock = f"unix:{tmp_path / 'b.sock'}"
    config = tmp_path / "b.toml"
    config.write_text('[server]\ngrace_period = 2.0\n[log]\nformat = "json"\n')
    process = await anyio.open_process(
        _cli("serve", "--config", str(config), "--listen", "127.0.0.1:0", "--listen", sock,
             "--heartbeat-interval", "0.5", "--log-level", "info"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await _wait_serving(sock)
        async with grpc.aio.insecure_channel(sock) as channel:
            call = stub(channel).Subscribe()
            await call.write(add("a"))
            assert (await read_kind(call, "add_result")).ok
            os.kill(process.pid, signum)
            ended = await read_kind(call, "subscription_ended", within=10)
            assert ended.reason == "hub_closed"
        with anyio.fail_after(10):
            assert await process.wait() == 0
        assert process.stderr is not None
        chunks = []
        with anyio.fail_after(10):
            try:
                while True:
                    chunks.append(await process.stderr.receive())
            except anyio.EndOfStream:
                pass
        logs = b"".join(chunks).decode().splitlines()
        assert any(json.loads(line)["msg"].startswith("serving") for line in logs)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


async def test_cli_stats_table_and_json(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        await publish(channel, "k8s.io", "/x")
    address = server.addresses[1]
    result = await anyio.run_process(_cli("stats", "--address", address, "--json"))
    data = json.loads(result.stdout)
    assert data["namespaces"][0]["namespace"] == "k8s.io"
    assert data["epoch"] == server.hub.epoch
    table = (await anyio.run_process(_cli("stats", "--address", address))).stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["NAMESPACE", "PUBLISHED", "DELIVERED"]
    assert table.splitlines()[1].split()[:2] == ["k8s.io", "1"]
    bad = await anyio.run_process(_cli("stats", "--address", address, "--namespace", "nope"),
                                  check=False)
    assert bad.returncode == 1 and b"NOT_FOUND" in bad.stderr


async def test_cli_serve_rejects_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "b.toml"
    config.write_text("[server]\nlisten = 5\n")
    result = await anyio.run_process(_cli("serve", "--config", str(config)), check=False)
    assert result.returncode == 2
    assert b"server.listen:" in result.stderr

"""``broadcaster serve --workers N``: N real server processes on one TCP port
(``SO_REUSEPORT``) and one JetStream log (a real nats-server): the kernel spreads the
connections, every subscriber gets every event whichever worker took the publish, a
killed worker is started again, SIGTERM stops them all, and workers whose supervisor was
SIGKILLed stop by themselves."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import grpc
import pytest

from broadcaster._cli import main
from broadcaster._cli._workers import worker_config
from broadcaster._config_file import ConfigError, parse_config
from broadcaster.v1 import broadcaster_pb2 as pb

from .._loops import ASYNCIO
from .._nats import NatsNode, free_ports, kill_process
from ..grpc._helpers import add, read_kind, stub

ROOT = Path(__file__).resolve().parents[2]
_READY = 30.0


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


# -- settings ---------------------------------------------------------------------------------

def _jetstream(**process: object) -> dict[str, dict[str, object]]:
    return {"process": process, "log": {"backend": "jetstream",
                                        "jetstream": {"servers": ["nats://127.0.0.1:4222"]}},
            "server": {"listen": ["127.0.0.1:50051", "unix:/run/b.sock"],
                       "metrics_listen": "127.0.0.1:9100"}}


def test_workers_need_the_jetstream_log_and_fixed_ports() -> None:
    with pytest.raises(ConfigError, match="jetstream") as info:
        parse_config({"process": {"workers": 2}})
    assert info.value.field == "process.workers"
    data = _jetstream(workers=2)
    data["server"]["listen"] = ["unix:/run/b.sock", "127.0.0.1:0"]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.field == "server.listen[1]"
    data = _jetstream(workers=2)
    data["server"]["listen"] = ["unix:/run/b.sock"]
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_config(data)
    data = _jetstream(workers=2)
    data["server"]["metrics_listen"] = "127.0.0.1:0"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.field == "server.metrics_listen"
    with pytest.raises(ConfigError) as info:
        parse_config(_jetstream(workers=0))
    assert info.value.field == "process.workers"
    assert parse_config(_jetstream()).workers == 1


def test_each_worker_shares_the_tcp_ports_and_worker_0_keeps_the_unix_sockets() -> None:
    config = parse_config(_jetstream(workers=3))
    assert config.workers == 3 and not config.server.reuse_port
    first, third = worker_config(config, 0), worker_config(config, 2)
    assert first.server.listen == ("127.0.0.1:50051", "unix:/run/b.sock")
    assert third.server.listen == ("127.0.0.1:50051",)
    assert (first.server.metrics_listen, third.server.metrics_listen) == (
        "127.0.0.1:9100", "127.0.0.1:9102")
    assert first.server.reuse_port and third.server.reuse_port
    assert ("grpc.so_reuseport", 1) in third.server.grpc_options(tcp=True)
    assert ("grpc.so_reuseport", 0) in config.server.grpc_options(tcp=True)
    assert first.workers == third.workers == 1


def test_a_unix_socket_listener_setting_stays_with_worker_0() -> None:
    data = _jetstream(workers=2)
    data["security"] = {"listeners": {"unix:/run/b.sock": {"auth": "none"}}}
    config = parse_config(data)
    assert "unix:/run/b.sock" in worker_config(config, 0).server.security.listeners
    assert worker_config(config, 1).server.security.listeners == {}


def test_serve_refuses_workers_on_the_memory_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "2", "--listen", "127.0.0.1:1"]) == 2
    assert "process.workers: worker processes share events only through the jetstream " \
        "log" in capsys.readouterr().err


# -- real processes ---------------------------------------------------------------------------

def _port_pair() -> int:
    """A free loopback port whose successor is free too (worker 1's /metrics)."""
    for _ in range(50):
        [port] = free_ports(1)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free ports")


class Workers:
    """``broadcaster serve --workers 2`` with its log in a file."""

    def __init__(self, tmp: Path, nats: NatsNode) -> None:
        [self.port] = free_ports(1)
        self.metrics = _port_pair()
        self.socket = tmp / "b.sock"
        self.log = tmp / "serve.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broadcaster._cli", "serve", "--workers", "2",
                 "--backplane", nats.url, "--listen", f"127.0.0.1:{self.port}",
                 "--listen", f"unix:{self.socket}",
                 "--metrics-listen", f"127.0.0.1:{self.metrics}",
                 "--heartbeat-interval", "0.5", "--grace-period", "1"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = _READY) -> list[str]:
        """The first *count* matches of *pattern* in the log (waits for them, bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{count} x {pattern!r} not logged:\n{self.text()[-3000:]}")

    def pids(self) -> dict[int, int]:
        """The pid of each worker, as the supervisor last logged it."""
        pids = {}
        for index, pid in re.findall(r"worker started index=(\d+) pid=(\d+)", self.text()):
            pids[int(index)] = int(pid)
        return pids

    def streams(self, index: int) -> float:
        """Open Subscribe streams of worker *index* (its /metrics)."""
        url = f"http://127.0.0.1:{self.metrics + index}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("broadcaster_grpc_streams_open{") and "Subscribe" in line \
                    and "broadcaster.v1" in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
def workers(tmp_path: Path, nats_server: NatsNode) -> Iterator[Workers]:
    w = Workers(tmp_path, nats_server)
    try:
        w.wait_for(r"worker=\d serving", 2)
        yield w
    finally:
        pids = w.pids().values()
        kill_process(w.process)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of the (dead) supervisor is reaped by init; count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return
        time.sleep(0.05)
    raise AssertionError(f"still running: {[p for p in pids if not _gone(p)]}")


async def _subscribers(w: Workers, limit: int = 64) -> list[tuple[grpc.aio.Channel, object]]:
    """Subscribers on connections of their own, until both workers serve some (bounded:
    the kernel hashes each connection to a worker; 64 all on one has odds 2^-63)."""
    subs: list[tuple[grpc.aio.Channel, object]] = []
    options = [("grpc.use_local_subchannel_pool", 1)]
    while len(subs) < limit:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{w.port}", options=options)
        call = stub(channel).Subscribe()
        await call.write(add(f"s{len(subs)}", ("w",)))
        result = await read_kind(call, "add_result")
        assert result.ok, result
        subs.append((channel, call))
        if len(subs) >= 4 and w.streams(0) >= 1 and w.streams(1) >= 1:
            return subs
    raise AssertionError(f"{limit} connections did not reach both workers")


async def _events(call: object, count: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    with anyio.fail_after(15):
        while len(got) < count:
            batch = await read_kind(call, "event_batch", skip=("heartbeat",))
            got += [(d.event.sequence, d.event.payload.value) for d in batch.deliveries]
    return got


@pytest.mark.anyio
@pytest.mark.usefixtures("shared_event_loop")
async def test_two_workers_share_the_port_and_every_subscriber_gets_every_event(
    workers: Workers,
) -> None:
    subs = await _subscribers(workers)
    assert workers.streams(0) + workers.streams(1) == len(subs)
    # published on worker 0 (the unix socket is its own) and over TCP (either worker)
    async with grpc.aio.insecure_channel(f"unix:{workers.socket}") as local, \
            grpc.aio.insecure_channel(f"127.0.0.1:{workers.port}") as remote:
        for i in range(6):
            channel = local if i % 2 == 0 else remote
            response = await stub(channel).Publish(pb.PublishRequest(
                namespace="w", topic="/t", payload=_any(f"e{i}".encode())))
            assert response.sequence == i + 1
    expected = [(i + 1, f"e{i}".encode()) for i in range(6)]
    for channel, call in subs:
        assert await _events(call, 6) == expected
        await channel.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("shared_event_loop")
async def test_a_killed_worker_is_started_again_and_sigterm_stops_them_all(
    workers: Workers,
) -> None:
    old = workers.pids()[1]
    os.kill(old, signal.SIGKILL)
    workers.wait_for(rf"worker exited index=1 pid={old} status=-9: starting it again")
    workers.wait_for(r"worker=1 serving", 2)
    new = workers.pids()[1]
    assert new != old
    # the new worker 1 serves: its /metrics, and connections the kernel gives it
    subs = await _subscribers(workers)
    for channel, _ in subs:
        await channel.close()
    pids = list(workers.pids().values())
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=20) == 0, workers.text()[-3000:]
    _wait_gone(pids)
    assert re.findall(r"worker stopped index=\d status=0", workers.text())


def test_workers_stop_when_their_supervisor_is_killed(workers: Workers) -> None:
    pids = list(workers.pids().values())
    workers.process.kill()
    workers.process.wait(timeout=10)
    _wait_gone(pids)
    assert len(re.findall(r"supervisor gone pid=\d+: stopping", workers.text())) == 2


def _any(value: bytes) -> object:
    from google.protobuf.any_pb2 import Any as PbAny

    return PbAny(type_url="t", value=value)

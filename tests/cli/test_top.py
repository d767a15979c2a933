"""`broadcaster top --once/--json`, `stats` and `health` as real processes against a
Server started in the test, with traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from broadcaster.grpc import Server

from .._loops import ASYNCIO
from ._traffic import STUCK_BOUND, running_server, traffic

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

CLI = [sys.executable, "-m", "broadcaster._cli"]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        yield srv


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(30):
        result = await anyio.run_process([*CLI, *args], check=False)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


async def test_top_json_is_one_sample_with_rates_drops_subscribers_and_lag(
        server: Server) -> None:
    async with traffic(server):
        result = await cli("top", "--address", server.addresses[0], "--json",
                           "--interval", "0.3")
        after = server.hub.statistics()
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["address"], data["epoch"]) == (server.addresses[0], server.hub.epoch)
    assert data["subscriptions"] == 2 and data["streams"] >= 3  # Subscribe + 2 PublishStream
    assert data["interval_seconds"] > 0
    busy, stuck = data["namespaces"]
    assert (busy["namespace"], stuck["namespace"]) == ("busy", "stuck")
    assert busy["publish_rate"] > 0 and busy["delivery_rate"] > 0
    assert (busy["subscribers"], busy["dropped"], busy["drop_rate"]) == (1, 0, 0.0)
    assert stuck["publish_rate"] > 0 and stuck["drop_rate"] > 0
    assert stuck["dropped_by_reason"].keys() == {"drop_newest"}
    assert (stuck["subscribers"], stuck["max_lag"]) == (1, STUCK_BOUND)
    for row in (busy, stuck):  # figures of the moment, before the server's figures after
        assert 0 < row["published"] <= after.namespaces[row["namespace"]].published
    totals = data["totals"]
    assert totals["published"] == busy["published"] + stuck["published"]
    assert totals["publish_rate"] == pytest.approx(busy["publish_rate"] + stuck["publish_rate"])


async def test_top_once_prints_the_table_sorted(server: Server) -> None:
    async with traffic(server):
        result = await cli("top", "--address", server.addresses[1], "--once",
                           "--interval", "0.3", "--sort", "drops")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"broadcaster top  {server.addresses[1]}  epoch "
                               f"{server.hub.epoch}  up ")
    assert lines[1].startswith("subscriptions 2  streams ")
    assert lines[2].startswith("publish ") and "/s  deliver " in lines[2]
    title = lines[4].split()
    rows = {line.split()[0]: dict(zip(title, line.split(), strict=True)) for line in lines[5:]}
    assert [line.split()[0] for line in lines[5:]] == ["stuck", "busy"]  # drops first
    assert rows["stuck"]["LAG"] == str(STUCK_BOUND) and rows["stuck"]["SUBS"] == "1"
    assert rows["stuck"]["DROP/s"] not in ("-", "0")
    assert rows["busy"]["PUB/s"] not in ("-", "0") and rows["busy"]["DROPPED"] == "0"


async def test_stats_table_and_json_show_the_lag(server: Server) -> None:
    async with traffic(server):
        table = await cli("stats", "--address", server.addresses[0])
        data = await cli("stats", "--address", server.addresses[0], "--json",
                         "--namespace", "stuck")
    assert table.returncode == 0 and data.returncode == 0, (table.stderr, data.stderr)
    title, *rows = table.stdout.splitlines()[:3]
    stuck = dict(zip(title.split(), rows[1].split(), strict=True))
    assert (stuck["NAMESPACE"], stuck["LAG"], stuck["SUBS"]) == ("stuck", "4", "1")
    [only] = json.loads(data.stdout)["namespaces"]
    assert (only["namespace"], only["max_lag"]) == ("stuck", "4")


async def test_stats_waits_for_a_slow_handshake_until_its_deadline(tmp_path: Path) -> None:
    """A server that accepts but has not answered the HTTP/2 handshake yet (busy, or at
    the end of a slow link) is waited for until ``--timeout``: the connection attempt
    used to be given up after 200 ms (UNAVAILABLE: "connection attempt timed out before
    receiving SETTINGS frame"), which failed ``stats`` against a loaded server."""
    path = tmp_path / "mute.sock"
    accepted: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:  # says nothing until the test ends
            accepted.append(stream)
            await anyio.sleep_forever()

    async with await anyio.create_unix_listener(path) as listener, \
            anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        result = await cli("stats", "--address", f"unix:{path}", "--timeout", "1.5")
        tg.cancel_scope.cancel()
    assert accepted, "the command never connected"
    assert result.returncode == 1
    assert result.stderr.startswith("broadcaster stats: DEADLINE_EXCEEDED"), result.stderr


async def test_top_errors(server: Server, tmp_path: Path) -> None:
    gone = f"unix:{tmp_path / 'nobody.sock'}"
    cases = [
        (["--address", gone, "--once"], 1, "broadcaster top: UNAVAILABLE: "),
        (["--address", gone, "--json"], 1, "broadcaster top: UNAVAILABLE: "),
        (["--address", server.addresses[0], "--once", "--namespace", "nope"], 1,
         "broadcaster top: NOT_FOUND: namespaces[0]: no namespace 'nope'"),
        (["--address", server.addresses[0], "--once", "--interval", "0"], 2,
         "broadcaster top: --interval must be a positive number of seconds"),
        (["--address", server.addresses[0]], 2,  # stdout is a pipe here
         "broadcaster top: the live view needs a terminal; use --once or --json"),
    ]
    results: dict[int, subprocess.CompletedProcess[str]] = {}

    async def one(i: int, args: list[str]) -> None:
        results[i] = await cli("top", *args)

    async with anyio.create_task_group() as tg:
        for i, (args, _, _) in enumerate(cases):
            tg.start_soon(one, i, args)
    for i, (args, code, message) in enumerate(cases):
        result = results[i]
        assert (result.returncode, result.stdout) == (code, ""), (args, result)
        assert result.stderr.startswith(message), (args, result.stderr)


async def test_health_reports_serving_and_waits_for_a_server(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    address = f"unix:{tmp_path / 's' / 'b.sock'}"
    gone = await cli("health", "--address", address)
    assert gone.returncode == 1 and gone.stderr.startswith("broadcaster health: UNAVAILABLE")
    async with await anyio.open_process([*CLI, "health", "--address", address,
                                         "--wait", "20"]) as waiting:
        async with running_server(tmp_path / "s") as server:
            with anyio.fail_after(25):
                assert await waiting.wait() == 0
            assert waiting.stdout is not None
            assert await waiting.stdout.receive() == b"SERVING\n"
            services = {"broadcaster.v1.Broadcaster": (0, "SERVING\n"),
                        "no.such.Service": (1, "SERVICE_UNKNOWN\n")}
            got = {}

            async def ask(service: str) -> None:
                result = await cli("health", "--address", server.addresses[0],
                                   "--service", service)
                got[service] = (result.returncode, result.stdout)

            async with anyio.create_task_group() as tg:
                for service in services:
                    tg.start_soon(ask, service)
            assert got == services
            await server.stop()
            stopping = await cli("health", "--address", address)
            assert stopping.returncode == 1, stopping

"""Faults with real components: ``kill -9`` of a broadcaster node under a steady
publisher, NATS down then back, ``kill -9`` of a ``local`` server right after
acknowledgements. (The JetStream leader's death, which needs a 3-node NATS cluster, is in
``test_leader.py``, run by ``make test-cluster``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import grpc
import pytest

from broadcaster.client import AvailabilityNotice, Backoff, Client, Event, ResyncNotice
from broadcaster.v1 import broadcaster_pb2 as pb

from .._nats import NatsNode
from ..grpc._helpers import stub
from ._serve import ServeProcess
from .conftest import MakeNode

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

FAST = Backoff(initial=0.02, maximum=0.2)


async def start(*processes: ServeProcess) -> None:
    for process in processes:
        process.start()
    for process in processes:
        await anyio.to_thread.run_sync(process.wait_ready)


async def collect(sub: Any, out: list[Any], until: Any, within: float) -> None:
    """Append *sub*'s items to *out* until ``until(out)`` holds (at most *within* s)."""
    with anyio.fail_after(within):
        async for batch in sub.batches():
            out.extend(batch)
            if until(out):
                return


def events(items: list[Any]) -> list[Event]:
    return [i for i in items if isinstance(i, Event)]


@pytest.mark.timeout(120)
async def test_kill_9_of_a_node_under_a_steady_publisher_loses_no_acknowledged_event(
    nats_server: NatsNode, tmp_path: Path,
) -> None:
    a = ServeProcess("a", tmp_path, "--backplane", nats_server.url)
    b = ServeProcess("b", tmp_path, "--backplane", nats_server.url)
    await start(a, b)
    total = 2000
    acked: dict[int, bytes] = {}
    head = [0]
    try:
        async with Client([a.address, b.address], backoff=FAST, timeout=30) as publishing, \
                Client([a.address, b.address], backoff=FAST) as on_a, \
                Client([b.address, a.address], backoff=FAST) as on_b, \
                on_a.subscribe("k8s.io") as watch_a, on_b.subscribe("k8s.io") as watch_b:
            seen: dict[str, list[Any]] = {"a": [], "b": []}

            def complete(items: list[Any]) -> bool:
                got = events(items)
                return bool(head[0]) and bool(got) and got[-1].sequence >= head[0]

            async def publish() -> None:
                async with publishing.publisher("k8s.io", max_batch=20, timeout=30) as pub:
                    futures = []
                    for i in range(total):
                        futures.append(await pub.submit("/tasks/exit", str(i).encode()))
                        if i % 20 == 0:
                            await anyio.sleep(0.002)  # a steady publisher, not one burst
                        if i == total // 2:
                            a.kill()  # kill -9 of the node the publisher (and one
                            # subscriber) are connected to
                    await pub.flush()
                for i, future in enumerate(futures):
                    acked[future.result()] = str(i).encode()
                head[0] = max(acked)

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, watch_a, seen["a"], lambda _: False, 90)
                tg.start_soon(collect, watch_b, seen["b"], lambda _: False, 90)
                await publish()
                with anyio.fail_after(60):  # what every subscriber still has to get
                    while not (complete(seen["a"]) and complete(seen["b"])):
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            assert publishing.failovers >= 1 and on_a.failovers >= 1
    finally:
        a.kill()
        b.stop()
    # every acknowledged event stored once: the re-sent ones were recognised by their ids
    assert len(acked) == total and head[0] == total
    for name, items in seen.items():
        got = events(items)
        assert not [i for i in items if isinstance(i, ResyncNotice)], name
        assert [e.sequence for e in got] == list(range(1, total + 1)), name  # no gap, no dup
        missing = [s for s, payload in acked.items() if got[s - 1].payload != payload]
        assert not missing, f"{name}: {len(missing)} acknowledged events missing"


async def test_nats_down_then_back(nats_server: NatsNode, make_node: MakeNode) -> None:
    node = await make_node([nats_server.url])
    async with Client(node.addresses[0], backoff=FAST, timeout=30) as client, \
            client.subscribe("default") as sub, \
            grpc.aio.insecure_channel(node.addresses[0]) as channel:
        items: list[Any] = []
        assert [await client.publish("default", "/x", str(i).encode()) for i in range(3)] \
            == [1, 2, 3]
        await collect(sub, items, lambda got: len(events(got)) == 3, 10)
        nats_server.kill()
        # publishing fails at once, nothing accepted
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(channel).Publish(pb.PublishRequest(namespace="default", topic="/lost"),
                                        timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "NATS" in (info.value.details() or "")
        # the subscriber stays connected and is told
        await collect(sub, items, lambda got: isinstance(got[-1], AvailabilityNotice), 10)
        assert items[-1] == AvailabilityNotice("default", False, "NATS connection lost")
        seqs: list[int] = []

        async def publish_through() -> None:  # the client sends it again until NATS is back
            seqs.append(await client.publish("default", "/x", b"3"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_through)
            await anyio.sleep(0.5)
            assert not seqs
            nats_server.start()
            await anyio.to_thread.run_sync(nats_server.wait_ready)
        seqs.append(await client.publish("default", "/x", b"4"))
        assert seqs == [4, 5]
        await collect(sub, items, lambda got: len(events(got)) == 5, 20)
    assert [e.sequence for e in events(items)] == [1, 2, 3, 4, 5]  # no gap, nothing twice
    assert [e.payload for e in events(items)] == [b"0", b"1", b"2", b"3", b"4"]
    notices = [i for i in items if isinstance(i, AvailabilityNotice)]
    assert [n.available for n in notices] == [False, True]


@pytest.mark.timeout(120)
async def test_kill_9_of_a_local_server_right_after_acknowledgements(tmp_path: Path) -> None:
    server = ServeProcess("local", tmp_path, "--data-dir", str(tmp_path / "data"),
                          "--fsync", "always")
    await start(server)
    acked: dict[int, bytes] = {}
    try:
        async with Client(server.address, timeout=5) as client:
            epoch = (await client.stats()).epoch
            killed = anyio.Event()

            async def publisher(n: int) -> None:
                for i in range(10_000):  # bounded; killed long before
                    payload = f"{n}.{i}".encode()
                    acked[await client.publish("default", "/tasks/exit", payload)] = payload
                    if len(acked) >= 300 and not killed.is_set():
                        server.kill()  # right after an acknowledgement, others in flight
                        killed.set()

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(publisher, n)
                await killed.wait()
                tg.cancel_scope.cancel()
        await start(server)
        async with Client(server.address) as client, \
                client.subscribe("default", since=0, epoch=epoch) as sub:
            items: list[Any] = []
            await collect(sub, items, lambda got: len(events(got)) >= max(acked), 20)
            assert (await client.stats()).epoch == epoch  # the same history
    finally:
        server.stop()
    assert not [i for i in items if isinstance(i, ResyncNotice)]
    got = events(items)
    assert [e.sequence for e in got[: max(acked)]] == list(range(1, max(acked) + 1))
    stored = {e.sequence: e.payload for e in got}
    missing = {seq: p for seq, p in acked.items() if stored.get(seq) != p}
    assert not missing

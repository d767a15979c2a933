"""Publisher and subscriber processes for the network scenarios, for three systems:
our gRPC server (raw generated stubs), NATS (nats-py) and Redis pub/sub (redis asyncio).

``python -m bench.net_worker '{"role": "sub"|"pub", "system": "grpc"|"nats"|"redis", ...}'``

A subscriber process prints ``{"ready": ...}`` once all its subscriptions are live, then
``{"result": ...}`` when it has its expected deliveries, or after ``idle_timeout`` s
without any, or at ``deadline``. A publisher waits for a ``go`` line on stdin, publishes
(as fast as possible or paced at ``rate`` events/s) and prints ``{"result": ...}``.
Latencies (publish wall clock in the payload to receipt, in us) are written raw to
``lat_file`` so the harness computes exact percentiles over all processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from array import array
from typing import Any

from bench._util import emit, payload, run_worker, stamp_of

BATCH = 100


class Tally:
    """Deliveries seen by one subscriber process."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.expected = p.get("expected", 0)
        self.got = 0
        self.dropped = 0
        self.ended = 0
        self.first_ns = 0
        self.last_ns = 0
        self.lat = array("q") if p.get("lat_file") else None
        self.done = asyncio.Event()
        self.last_progress = time.monotonic()

    def add(self, stamp: int, n: int) -> None:
        now = time.time_ns()
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        self.got += n
        if self.lat is not None:
            us = (now - stamp) // 1000
            for _ in range(n):
                self.lat.append(us)
        self.last_progress = time.monotonic()
        if self.expected and self.got + self.dropped >= self.expected:
            self.done.set()

    def result(self) -> dict[str, Any]:
        return {
            "cpu_s": time.process_time(),
            "received": self.got,
            "dropped": self.dropped,
            "ended": self.ended,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
        }


async def _finish(tally: Tally, p: dict[str, Any]) -> None:
    """Return when all expected deliveries came, or nothing came for idle_timeout s."""
    end = time.monotonic() + p["deadline"]
    idle = p.get("idle_timeout", 5.0)
    while not tally.done.is_set() and time.monotonic() < end:
        if p.get("go_received") and time.monotonic() - tally.last_progress > idle:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done.wait(), 0.2)


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _wait_go(p: dict[str, Any], tally: Tally | None = None) -> None:
    reader = await _stdin_lines()
    line = await asyncio.wait_for(reader.readline(), p["deadline"])
    if line.strip() != b"go":
        raise SystemExit("expected 'go'")
    p["go_received"] = True
    if tally is not None:
        tally.last_progress = time.monotonic()


# -- gRPC ------------------------------------------------------------------------------


def _grpc_policy(p: dict[str, Any]) -> Any:
    from google.protobuf.duration_pb2 import Duration

    from broadcaster.v1 import broadcaster_pb2 as pb

    kind = p.get("policy", "block")
    pol = pb.OverflowPolicy(max_events=p.get("max_events", 8192))
    if kind == "block":
        pol.kind = pb.OverflowPolicy.BLOCK
        pol.block_timeout.CopyFrom(Duration(seconds=5))  # the default max_block_timeout
        pol.fallback = pb.OverflowPolicy.DROP_NEWEST
    elif kind == "drop_newest":
        pol.kind = pb.OverflowPolicy.DROP_NEWEST
    else:
        pol.kind = pb.OverflowPolicy.DISCONNECT
    return pol


async def grpc_sub(p: dict[str, Any]) -> None:
    import grpc

    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    tally = Tally(p)
    subs, streams = p["subscriptions"], max(1, p.get("streams", 1))
    stalled = p.get("stalled", False)
    policy = _grpc_policy(p)
    async with grpc.aio.insecure_channel(p["address"]) as channel:
        stub = BroadcasterStub(channel)
        added = asyncio.Event()
        n_ok = 0
        tasks = []

        async def one_stream(index: int, ids: list[str]) -> None:
            nonlocal n_ok
            queue: asyncio.Queue[Any] = asyncio.Queue()
            for sid in ids:
                queue.put_nowait(
                    pb.SubscribeRequest(
                        add=pb.SubscribeRequest.Add(
                            subscription_id=sid,
                            namespaces=[p.get("namespace", "bench")],
                            filters=p.get("filters", []),
                            policy=policy,
                        )
                    )
                )

            async def requests() -> Any:
                while True:
                    item = await queue.get()
                    if item is None:
                        return
                    yield item

            call = stub.Subscribe(requests())
            if stalled:  # never read: the server's policy must deal with us
                async for msg in call:
                    if msg.WhichOneof("kind") == "add_result":
                        n_ok += 1
                        if n_ok == subs:
                            added.set()
                        if n_ok == len(ids):
                            break
                await asyncio.sleep(p["deadline"])
                return
            async for msg in call:
                kind = msg.WhichOneof("kind")
                if kind == "event_batch":
                    for d in msg.event_batch.deliveries:
                        tally.add(stamp_of(d.event.payload.value), len(d.subscription_ids))
                elif kind == "heartbeat":
                    queue.put_nowait(
                        pb.SubscribeRequest(
                            ack=pb.SubscribeRequest.Ack(heartbeat_id=msg.heartbeat.heartbeat_id)
                        )
                    )
                elif kind == "drop_notice":
                    tally.dropped += msg.drop_notice.count
                elif kind == "subscription_ended":
                    tally.ended += 1
                elif kind == "add_result":
                    if not msg.add_result.ok:
                        raise SystemExit(f"add failed: {msg.add_result.error.message}")
                    n_ok += 1
                    if n_ok == subs:
                        added.set()

        per = [list() for _ in range(streams)]
        for i in range(subs):
            per[i % streams].append(f"s{p.get('index', 0)}-{i}")
        for i, ids in enumerate(per):
            if ids:
                tasks.append(asyncio.create_task(one_stream(i, ids)))
        await asyncio.wait_for(added.wait(), p["deadline"])
        emit(ready=True)
        await _wait_go(p, tally)
        if p.get("hold"):  # idle but healthy: keep acking heartbeats until killed
            await asyncio.sleep(p["deadline"])
        await _finish(tally, p)
        for t in tasks:
            t.cancel()
    _report(tally, p)


def _report(tally: Tally, p: dict[str, Any]) -> None:
    if tally.lat is not None:
        with open(p["lat_file"], "wb") as f:
            tally.lat.tofile(f)
    emit(result=tally.result())


async def grpc_pub(p: dict[str, Any]) -> None:
    import grpc
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    events, rate = p["events"], p.get("rate")
    namespace = p.get("namespace", "bench")
    window = p.get("window", 8)
    async with grpc.aio.insecure_channel(p["address"]) as channel:
        stub = BroadcasterStub(channel)
        await channel.channel_ready()
        emit(ready=True)
        await _wait_go(p)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=window)
        sent = 0
        errors = 0
        start_ns = time.time_ns()

        def batch(n: int, bid: int) -> Any:
            now = time.time_ns()
            return pb.PublishStreamRequest(
                batch_id=bid,
                events=[
                    pb.PublishRequest(
                        namespace=namespace,
                        topic="/bench",
                        payload=PbAny(type_url="bench/raw", value=payload(now)),
                    )
                    for _ in range(n)
                ],
            )

        async def requests() -> Any:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item

        call = stub.PublishStream(requests())
        credits = asyncio.Semaphore(window)

        async def answers() -> None:
            nonlocal errors
            async for resp in call:
                if resp.HasField("error"):
                    errors += 1
                credits.release()

        reader = asyncio.create_task(answers())
        bid = 0
        loop_start = time.monotonic()
        while sent < events and time.monotonic() - loop_start < p["deadline"]:
            if rate:
                due = min(events, int((time.monotonic() - loop_start) * rate) + 1)
                n = min(BATCH, due - sent)
                if n <= 0:
                    await asyncio.sleep(0.0005)
                    continue
            else:
                n = min(BATCH, events - sent)
            await credits.acquire()
            bid += 1
            await queue.put(batch(n, bid))
            sent += n
        for _ in range(window):  # wait for every answer
            await asyncio.wait_for(credits.acquire(), p["deadline"])
        end_ns = time.time_ns()
        await queue.put(None)
        reader.cancel()
    emit(
        result={
            "cpu_s": time.process_time(),
            "published": sent,
            "errors": errors,
            "start_ns": start_ns,
            "end_ns": end_ns,
        }
    )


# -- NATS ------------------------------------------------------------------------------


async def nats_sub(p: dict[str, Any]) -> None:
    import nats

    tally = Tally(p)
    conns = []

    async def handler(msg: Any) -> None:
        tally.add(stamp_of(msg.data), 1)

    for _ in range(p["subscriptions"]):
        nc = await nats.connect(p["address"], max_reconnect_attempts=0)
        await nc.subscribe(
            "bench", cb=handler, pending_msgs_limit=10_000_000, pending_bytes_limit=2**31
        )
        await nc.flush()
        conns.append(nc)
    emit(ready=True)
    await _wait_go(p, tally)
    await _finish(tally, p)
    for nc in conns:
        await nc.close()
    _report(tally, p)


async def nats_pub(p: dict[str, Any]) -> None:
    import nats

    nc = await nats.connect(p["address"], max_reconnect_attempts=0, pending_size=2**26)
    emit(ready=True)
    await _wait_go(p)
    events, rate = p["events"], p.get("rate")
    sent = 0
    start_ns = time.time_ns()
    loop_start = time.monotonic()
    while sent < events and time.monotonic() - loop_start < p["deadline"]:
        if rate:
            due = min(events, int((time.monotonic() - loop_start) * rate) + 1)
            n = min(BATCH, due - sent)
            if n <= 0:
                await nc.flush()
                await asyncio.sleep(0.0005)
                continue
        else:
            n = min(BATCH, events - sent)
        for _ in range(n):
            await nc.publish("bench", payload())
        sent += n
        if not rate and sent % 10_000 == 0:
            await nc.flush()
    await nc.flush()
    end_ns = time.time_ns()
    await nc.close()
    emit(
        result={
            "cpu_s": time.process_time(),
            "published": sent,
            "errors": 0,
            "start_ns": start_ns,
            "end_ns": end_ns,
        }
    )


# -- Redis -----------------------------------------------------------------------------


async def redis_sub(p: dict[str, Any]) -> None:
    import redis.asyncio as aioredis

    tally = Tally(p)
    host, port = p["address"].rsplit(":", 1)
    clients, pubsubs = [], []
    for _ in range(p["subscriptions"]):
        r = aioredis.Redis(host=host, port=int(port))
        ps = r.pubsub(ignore_subscribe_messages=True)
        await ps.subscribe("bench")
        await ps.get_message(timeout=1.0)
        clients.append(r)
        pubsubs.append(ps)

    async def pump(ps: Any) -> None:
        async for msg in ps.listen():
            if msg["type"] == "message":
                tally.add(stamp_of(msg["data"]), 1)

    emit(ready=True)
    tasks = [asyncio.create_task(pump(ps)) for ps in pubsubs]
    await _wait_go(p, tally)
    await _finish(tally, p)
    for t in tasks:
        t.cancel()
    for ps, r in zip(pubsubs, clients, strict=True):
        await ps.aclose()
        await r.aclose()
    _report(tally, p)


async def redis_pub(p: dict[str, Any]) -> None:
    import redis.asyncio as aioredis

    host, port = p["address"].rsplit(":", 1)
    r = aioredis.Redis(host=host, port=int(port))
    await r.ping()
    emit(ready=True)
    await _wait_go(p)
    events, rate = p["events"], p.get("rate")
    sent = 0
    start_ns = time.time_ns()
    loop_start = time.monotonic()
    while sent < events and time.monotonic() - loop_start < p["deadline"]:
        if rate:
            due = min(events, int((time.monotonic() - loop_start) * rate) + 1)
            n = min(BATCH, due - sent)
            if n <= 0:
                await asyncio.sleep(0.0005)
                continue
        else:
            n = min(BATCH, events - sent)
        pipe = r.pipeline(transaction=False)
        for _ in range(n):
            pipe.publish("bench", payload())
        await pipe.execute()
        sent += n
    end_ns = time.time_ns()
    await r.aclose()
    emit(
        result={
            "cpu_s": time.process_time(),
            "published": sent,
            "errors": 0,
            "start_ns": start_ns,
            "end_ns": end_ns,
        }
    )


ROLES = {
    ("sub", "grpc"): grpc_sub,
    ("pub", "grpc"): grpc_pub,
    ("sub", "nats"): nats_sub,
    ("pub", "nats"): nats_pub,
    ("sub", "redis"): redis_sub,
    ("pub", "redis"): redis_pub,
}


def main() -> int:
    return run_worker(lambda p: ROLES[(p["role"], p["system"])](p))


if __name__ == "__main__":
    sys.exit(main())

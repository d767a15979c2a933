"""Publisher and subscriber processes for the network scenarios, for four systems:
our gRPC server (raw generated stubs), NATS and Redis pub/sub, and NATS JetStream through
nats-py's own API (``jetstream``: the peer of our server on the ``jetstream`` log).

``python -m bench.net_worker '{"role": "sub"|"pub", "system": SYSTEM, ...}'`` (SYSTEM: ``grpc``,
``nats``, ``redis`` or ``jetstream``)

Both roles print ``{"ready": true}`` once connected (a subscriber process: once every one
of its subscriptions is live) and then obey lines on stdin.

Publisher (one connection):

* ``{"phase": K, "rate": R, "events": N}`` starts phase K: N events (null: until the
  next command) at R events/s (null: as fast as the window allows), every payload tagged
  with K; once a phase of N events is all acknowledged it prints
  ``{"phase_done": K, ...}``.
* ``{"phase": K, "switch": true}`` keeps the running schedule and tags the events
  scheduled from the moment the line arrived with K (a steady load across phases).
* ``stop`` (or end of input) waits for what is unacknowledged and prints
  ``{"result": ...}`` with the events published per phase.

Batching is the same for the three systems: at most 100 events per write and at most 8
writes unacknowledged. The acknowledgement of a write is, for gRPC, its
``PublishStreamResponse``; for NATS, the ``PONG`` answering the ``PING`` written after its
``PUB`` lines (the server answers in order, once it has routed them); for Redis, its
``PUBLISH`` replies; for JetStream, JetStream's acknowledgement of each of its messages
(``js.publish_async``, nats-py's pipelined publish). NATS and Redis are spoken directly on
the socket (their protocols are a few lines), so no client library's own buffering
differs between the three. JetStream subscribers are ordered push consumers
(``js.subscribe(..., ordered_consumer=True)``), one connection each, on stream
``bench`` (subject ``bench``, ``replicas`` from the parameters), which the first process
to open creates.

Paced phases: event i is due at phase start + i / rate and carries that scheduled time as
its stamp, so a publisher the server holds back shows in the latency (no coordinated
omission). Unpaced phases stamp the time the write is built.

Subscriber (one process, many subscriptions): ``progress`` prints
``{"progress": {K: deliveries of phase K, ...}}``; ``stop`` (or end of input) prints
``{"result": ...}`` after writing the raw latencies of each phase (us, ``array('i')``) to
``lat_dir/<index>-<phase>.bin`` when ``lat_dir`` is given. gRPC layouts: ``conn``, one
connection and one Subscribe stream per subscription (what independent clients do), or
``mux``, one connection per process with ``streams`` Subscribe streams carrying all its
subscriptions. NATS and Redis subscribers always have one connection each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time
from array import array
from itertools import repeat
from pathlib import Path
from typing import Any

from bench._util import emit, payload, run_worker, tag_of

BATCH = 100
WINDOW = 8


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _time_left(p: dict[str, Any], started: float) -> float:
    """Seconds left before the worker must report (2 s before its hard deadline)."""
    return p["deadline"] - 2.0 - (time.monotonic() - started)


# -- subscribers -----------------------------------------------------------------------


class _Phase:
    __slots__ = ("count", "first_ns", "last_ns", "lat")

    def __init__(self, latency: bool) -> None:
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.lat: array[int] | None = array("i") if latency else None


class Tally:
    """Deliveries seen by one subscriber process, per phase (from the payload's tag)."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.latency = bool(p.get("lat_dir"))
        self.phases: dict[int, _Phase] = {}
        self.dropped = 0
        self.ended = 0
        self.ended_reasons: dict[str, int] = {}
        self._key = -1
        self._cur = _Phase(False)

    def add(self, data: bytes, n: int) -> None:
        now = time.time_ns()
        stamp, phase = tag_of(data)
        if phase != self._key:
            if phase not in self.phases:
                self.phases[phase] = _Phase(self.latency)
            self._key, self._cur = phase, self.phases[phase]
        t = self._cur
        if not t.first_ns:
            t.first_ns = now
        t.last_ns = now
        t.count += n
        if t.lat is not None:
            us = (now - stamp) // 1000
            if n == 1:
                t.lat.append(us)
            else:
                t.lat.extend(repeat(us, n))

    def progress(self) -> dict[str, Any]:
        return {"received": {str(k): v.count for k, v in self.phases.items()},
                "dropped": self.dropped, "ended": self.ended}

    def result(self) -> dict[str, Any]:
        return {
            "cpu_s": time.process_time(),
            "received": sum(v.count for v in self.phases.values()),
            "phases": {str(k): {"received": v.count, "first_ns": v.first_ns,
                                "last_ns": v.last_ns} for k, v in self.phases.items()},
            "dropped": self.dropped,
            "ended": self.ended,
            "ended_reasons": self.ended_reasons,
        }


async def _serve_commands(tally: Tally, p: dict[str, Any], started: float) -> None:
    """Answer ``progress`` until ``stop``, end of input or the worker's time is up."""
    reader = await _stdin_lines()
    while (left := _time_left(p, started)) > 0:
        try:
            line = await asyncio.wait_for(reader.readline(), left)
        except TimeoutError:
            return
        cmd = line.strip()
        if not cmd or cmd == b"stop":
            return
        if cmd == b"progress":
            emit(progress=tally.progress())


def _report(tally: Tally, p: dict[str, Any]) -> None:
    if p.get("lat_dir"):
        for k, v in tally.phases.items():
            if v.lat is not None:
                with open(Path(p["lat_dir"]) / f"{p.get('index', 0)}-{k}.bin", "wb") as f:
                    v.lat.tofile(f)
    emit(result=tally.result())


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
    elif kind == "drop_oldest":
        pol.kind = pb.OverflowPolicy.DROP_OLDEST
    else:
        pol.kind = pb.OverflowPolicy.DISCONNECT
    return pol


async def grpc_sub(p: dict[str, Any]) -> None:
    import grpc

    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    started = time.monotonic()
    tally = Tally(p)
    subs = p["subscriptions"]
    if p.get("layout", "mux") == "conn":
        n_channels = n_streams = subs
    else:
        n_channels, n_streams = 1, max(1, min(subs, p.get("streams", 1)))
    stalled = p.get("stalled", False)
    policy = _grpc_policy(p)
    # a local subchannel pool per channel: each channel its own TCP connection
    options = [("grpc.use_local_subchannel_pool", 1)] if n_channels > 1 else []
    channels = [grpc.aio.insecure_channel(p["address"], options=options)
                for _ in range(n_channels)]
    added = asyncio.Event()
    n_ok = 0

    def one_ok() -> None:
        nonlocal n_ok
        n_ok += 1
        if n_ok == subs:
            added.set()

    async def one_stream(stub: Any, ids: list[str]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for sid in ids:
            queue.put_nowait(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
                subscription_id=sid, namespaces=[p.get("namespace", "bench")],
                filters=p.get("filters", []), policy=policy)))

        async def requests() -> Any:
            while (item := await queue.get()) is not None:
                yield item

        call = stub.Subscribe(requests())
        if stalled:  # never read past the AddResults: the server's policy must deal with us
            got = 0
            async for msg in call:
                if msg.WhichOneof("kind") == "add_result":
                    got += 1
                    one_ok()
                    if got == len(ids):
                        break
            await asyncio.sleep(p["deadline"])
            return
        async for msg in call:
            kind = msg.WhichOneof("kind")
            if kind == "event_batch":
                for d in msg.event_batch.deliveries:
                    tally.add(d.event.payload.value, len(d.subscription_ids))
            elif kind == "heartbeat":
                queue.put_nowait(pb.SubscribeRequest(
                    ack=pb.SubscribeRequest.Ack(heartbeat_id=msg.heartbeat.heartbeat_id)))
            elif kind == "drop_notice":
                tally.dropped += msg.drop_notice.count
            elif kind == "subscription_ended":
                tally.ended += 1
                reason = msg.subscription_ended.reason
                tally.ended_reasons[reason] = tally.ended_reasons.get(reason, 0) + 1
            elif kind == "add_result":
                if not msg.add_result.ok:
                    raise SystemExit(f"add failed: {msg.add_result.error.message}")
                one_ok()

    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
        stubs = [BroadcasterStub(c) for c in channels]
        per: list[list[str]] = [[] for _ in range(n_streams)]
        for i in range(subs):
            per[i % n_streams].append(f"s{p.get('index', 0)}-{i}")
        tasks = [asyncio.create_task(one_stream(stubs[i % n_channels], ids))
                 for i, ids in enumerate(per) if ids]
        ready = asyncio.create_task(added.wait())
        await asyncio.wait([ready, *tasks], timeout=_time_left(p, started),
                           return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        if not added.is_set():
            raise SystemExit(f"only {n_ok} of {subs} subscriptions were added in time")
        emit(ready=True, channels=n_channels, streams=n_streams)
        await _serve_commands(tally, p, started)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
    _report(tally, p)


async def nats_sub(p: dict[str, Any]) -> None:
    import nats

    started = time.monotonic()
    tally = Tally(p)
    conns = []

    async def handler(msg: Any) -> None:
        tally.add(msg.data, 1)

    for _ in range(p["subscriptions"]):
        nc = await nats.connect(p["address"], max_reconnect_attempts=0)
        await nc.subscribe(
            "bench", cb=handler, pending_msgs_limit=10_000_000, pending_bytes_limit=2**31
        )
        await nc.flush()
        conns.append(nc)
    emit(ready=True)
    await _serve_commands(tally, p, started)
    for nc in conns:
        await nc.close()
    _report(tally, p)


async def _bench_stream(js: Any, p: dict[str, Any]) -> None:
    """Create the peer's stream ``bench`` if it does not exist yet."""
    from nats.js import api
    from nats.js.errors import BadRequestError

    config = api.StreamConfig(name="bench", subjects=["bench"], storage=api.StorageType.FILE,
                              num_replicas=p.get("replicas", 1), max_msgs=10_000_000,
                              max_bytes=8 * 2**30)
    with contextlib.suppress(BadRequestError):  # created meanwhile by another process
        await js.add_stream(config)


async def jetstream_sub(p: dict[str, Any]) -> None:
    import nats
    from nats.js import api

    started = time.monotonic()
    tally = Tally(p)
    conns = []

    async def handler(msg: Any) -> None:
        tally.add(msg.data, 1)

    urls = p["address"].split(",")
    for i in range(p["subscriptions"]):
        nc = await nats.connect(urls, max_reconnect_attempts=0)
        js = nc.jetstream()
        if i == 0:
            await _bench_stream(js, p)
        await js.subscribe("bench", cb=handler, ordered_consumer=True,
                           deliver_policy=api.DeliverPolicy.NEW,
                           pending_msgs_limit=10_000_000, pending_bytes_limit=2**31)
        await nc.flush()
        conns.append(nc)
    emit(ready=True)
    await _serve_commands(tally, p, started)
    for nc in conns:
        await nc.close()
    _report(tally, p)


async def redis_sub(p: dict[str, Any]) -> None:
    import redis.asyncio as aioredis

    started = time.monotonic()
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
                tally.add(msg["data"], 1)

    emit(ready=True)
    tasks = [asyncio.create_task(pump(ps)) for ps in pubsubs]
    await _serve_commands(tally, p, started)
    for t in tasks:
        t.cancel()
    for ps, r in zip(pubsubs, clients, strict=True):
        await ps.aclose()
        await r.aclose()
    _report(tally, p)


# -- publishers ------------------------------------------------------------------------


class _Sink:
    """One publisher connection: :meth:`write` sends one batch while holding one of
    ``WINDOW`` credits; the acknowledgement reader gives credits back."""

    def __init__(self) -> None:
        self.credits = asyncio.Semaphore(WINDOW)
        self.errors = 0
        self.broken: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, p: dict[str, Any]) -> None:
        raise NotImplementedError

    async def write(self, payloads: list[bytes]) -> None:
        raise NotImplementedError

    async def _acks(self) -> None:
        raise NotImplementedError

    def _start_acks(self) -> None:
        async def run() -> None:
            try:
                await self._acks()
                self.broken = self.broken or "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.broken = f"{type(exc).__name__}: {exc}"[:300]
            for _ in range(WINDOW):  # nobody waits forever for acks that cannot come
                self.credits.release()
        self._task = asyncio.create_task(run())

    async def drain(self) -> None:
        """Return once every write is acknowledged (or the connection broke)."""
        for _ in range(WINDOW):
            await self.credits.acquire()
        for _ in range(WINDOW):
            self.credits.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class GrpcSink(_Sink):
    async def open(self, p: dict[str, Any]) -> None:
        import grpc
        from google.protobuf.any_pb2 import Any as PbAny

        from broadcaster.v1 import broadcaster_pb2 as pb
        from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

        self._pb, self._any = pb, PbAny
        self.namespace = p.get("namespace", "bench")
        self.channel = grpc.aio.insecure_channel(p["address"])
        await asyncio.wait_for(self.channel.channel_ready(), 15)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._bid = 0

        async def requests() -> Any:
            while (item := await self._queue.get()) is not None:
                yield item

        self._call = BroadcasterStub(self.channel).PublishStream(requests())
        self._start_acks()

    async def _acks(self) -> None:
        async for resp in self._call:
            if resp.HasField("error"):
                self.errors += 1
            self.credits.release()

    async def write(self, payloads: list[bytes]) -> None:
        pb, any_ = self._pb, self._any
        self._bid += 1
        self._queue.put_nowait(pb.PublishStreamRequest(batch_id=self._bid, events=[
            pb.PublishRequest(namespace=self.namespace, topic="/bench",
                              payload=any_(type_url="bench/raw", value=v))
            for v in payloads]))

    async def close(self) -> None:
        self._queue.put_nowait(None)
        await super().close()
        await self.channel.close()


class NatsSink(_Sink):
    async def open(self, p: dict[str, Any]) -> None:
        host, port = p["address"].removeprefix("nats://").rsplit(":", 1)
        self._reader, self._writer = await asyncio.open_connection(host, int(port))
        info = await asyncio.wait_for(self._reader.readline(), 10)
        if not info.startswith(b"INFO"):
            raise ConnectionError(f"nats: expected INFO, got {info[:80]!r}")
        self._writer.write(b'CONNECT {"verbose":false,"pedantic":false,"echo":false,'
                           b'"lang":"python","version":"bench","protocol":1}\r\nPING\r\n')
        pong = await asyncio.wait_for(self._reader.readline(), 10)
        if not pong.startswith(b"PONG"):
            raise ConnectionError(f"nats: expected PONG, got {pong[:80]!r}")
        self._start_acks()

    async def _acks(self) -> None:
        while line := await self._reader.readline():
            if line.startswith(b"PONG"):
                self.credits.release()
            elif line.startswith(b"PING"):
                self._writer.write(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                self.errors += 1

    async def write(self, payloads: list[bytes]) -> None:
        self._writer.write(b"".join(b"PUB bench %d\r\n%s\r\n" % (len(v), v) for v in payloads)
                           + b"PING\r\n")
        await self._writer.drain()

    async def close(self) -> None:
        await super().close()
        self._writer.close()


class RedisSink(_Sink):
    async def open(self, p: dict[str, Any]) -> None:
        host, port = p["address"].rsplit(":", 1)
        self._reader, self._writer = await asyncio.open_connection(host, int(port))
        self._writer.write(b"*1\r\n$4\r\nPING\r\n")
        pong = await asyncio.wait_for(self._reader.readline(), 10)
        if not pong.startswith(b"+PONG"):
            raise ConnectionError(f"redis: expected +PONG, got {pong[:80]!r}")
        self._pending: collections.deque[int] = collections.deque()
        self._start_acks()

    async def _acks(self) -> None:
        while line := await self._reader.readline():  # one line per PUBLISH reply
            if line.startswith(b"-"):
                self.errors += 1
            self._pending[0] -= 1
            if not self._pending[0]:
                self._pending.popleft()
                self.credits.release()

    async def write(self, payloads: list[bytes]) -> None:
        self._pending.append(len(payloads))
        self._writer.write(b"".join(
            b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%d\r\n%s\r\n" % (len(v), v)
            for v in payloads))
        await self._writer.drain()

    async def close(self) -> None:
        await super().close()
        self._writer.close()


class JetStreamSink(_Sink):
    """nats-py's JetStream publish: every message of a write published with
    ``publish_async`` (pipelined), the write acknowledged once JetStream acknowledged all
    of them."""

    async def open(self, p: dict[str, Any]) -> None:
        import nats

        self._nc = await nats.connect(p["address"].split(","), max_reconnect_attempts=0)
        self._js = self._nc.jetstream(publish_async_max_pending=BATCH * WINDOW * 2)
        await _bench_stream(self._js, p)
        self._writes: asyncio.Queue[list[Any] | None] = asyncio.Queue()
        self._start_acks()

    async def _acks(self) -> None:
        while (futures := await self._writes.get()) is not None:
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, BaseException):
                    self.errors += 1
            self.credits.release()

    async def write(self, payloads: list[bytes]) -> None:
        futures = [await self._js.publish_async("bench", v) for v in payloads]
        self._writes.put_nowait(futures)

    async def close(self) -> None:
        self._writes.put_nowait(None)
        await super().close()
        await self._nc.close()


SINKS: dict[str, type[_Sink]] = {"grpc": GrpcSink, "nats": NatsSink, "redis": RedisSink,
                                  "jetstream": JetStreamSink}


class _Plan:
    """One phase's schedule."""

    def __init__(self, cmd: dict[str, Any], when_ns: int) -> None:
        self.phase = int(cmd["phase"])
        self.rate: float | None = cmd.get("rate")
        self.events: int | None = cmd.get("events")
        self.sent = 0
        self.t0_wall = when_ns
        self.t0_mono = time.monotonic() - (time.time_ns() - when_ns) / 1e9
        self.switches: list[tuple[int, int]] = []  # (wall ns, phase) from "switch" lines
        self.reported = False

    @property
    def finished(self) -> bool:
        return self.events is not None and self.sent >= self.events

    def tag(self, stamp: int) -> int:
        phase = self.phase
        for when, k in self.switches:
            if stamp >= when:
                phase = k
        return phase


async def publisher(p: dict[str, Any]) -> None:
    started = time.monotonic()
    sink = SINKS[p["system"]]()
    await sink.open(p)
    emit(ready=True)
    reader = await _stdin_lines()
    commands: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

    async def read_commands() -> None:
        while True:
            line = (await reader.readline()).strip()
            commands.put_nowait((time.time_ns(), line or b"stop"))
            if not line or line == b"stop":
                return

    reading = asyncio.create_task(read_commands())
    phases: dict[int, dict[str, Any]] = {}
    plan: _Plan | None = None

    def count(phase: int, n: int, now: int) -> None:
        ph = phases.setdefault(phase, {"published": 0, "start_ns": now, "end_ns": now})
        ph["published"] += n
        ph["end_ns"] = now

    async def finish_phase(done: _Plan) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sink.drain(), max(0.1, _time_left(p, started)))
        done.reported = True
        ph = phases.setdefault(done.phase, {"published": 0, "start_ns": done.t0_wall})
        ph["end_ns"] = time.time_ns()
        emit(phase_done=done.phase, **ph, errors=sink.errors, broken=sink.broken)

    while (left := _time_left(p, started)) > 0 and sink.broken is None:
        line: bytes | None = None
        if plan is None or plan.finished:
            if plan is not None and not plan.reported:
                await finish_phase(plan)
            try:
                when, line = await asyncio.wait_for(commands.get(), left)
            except TimeoutError:
                break
        else:
            with contextlib.suppress(asyncio.QueueEmpty):
                when, line = commands.get_nowait()
        if line == b"stop":
            break
        if line:
            cmd = json.loads(line)
            if cmd.get("switch") and plan is not None:
                plan.switches.append((when, int(cmd["phase"])))
            else:
                if plan is not None and plan.events is not None and not plan.reported:
                    await finish_phase(plan)  # replaced before its end: report what it did
                plan = _Plan(cmd, when)
            continue
        assert plan is not None
        if plan.rate:
            due = int((time.monotonic() - plan.t0_mono) * plan.rate) + 1
            if plan.events is not None:
                due = min(due, plan.events)
            n = min(BATCH, due - plan.sent)
            if n <= 0:
                await asyncio.sleep(0.0005)
                continue
            step = 1e9 / plan.rate
            stamps = [plan.t0_wall + int((plan.sent + j) * step) for j in range(n)]
        else:
            n = BATCH if plan.events is None else min(BATCH, plan.events - plan.sent)
            stamps = [time.time_ns()] * n
        try:
            await asyncio.wait_for(sink.credits.acquire(), max(0.1, _time_left(p, started)))
        except TimeoutError:
            break
        if sink.broken is not None:
            break
        now = time.time_ns()
        if plan.switches:
            tags = [plan.tag(s) for s in stamps]
            for k in set(tags):
                count(k, tags.count(k), now)
        else:
            tags = [plan.phase] * n
            count(plan.phase, n, now)
        await sink.write([payload(s, k) for s, k in zip(stamps, tags, strict=True)])
        plan.sent += n
    with contextlib.suppress(TimeoutError):  # bounded: a frozen server must not keep us
        await asyncio.wait_for(sink.drain(), max(0.1, min(p.get("stop_timeout", 20.0),
                                                          _time_left(p, started))))
    reading.cancel()
    if plan is not None and not plan.reported:  # the running phase ends with its last ack
        last = plan.tag(time.time_ns()) if plan.switches else plan.phase
        if last in phases:
            phases[last]["end_ns"] = time.time_ns()
    await sink.close()
    emit(result={
        "cpu_s": time.process_time(),
        "published": sum(ph["published"] for ph in phases.values()),
        "phases": {str(k): v for k, v in phases.items()},
        "errors": sink.errors,
        "broken": sink.broken,
    })


SUBSCRIBERS = {"grpc": grpc_sub, "nats": nats_sub, "redis": redis_sub,
               "jetstream": jetstream_sub}


async def _main(p: dict[str, Any]) -> None:
    if p["role"] == "pub":
        await publisher(p)
    else:
        await SUBSCRIBERS[p["system"]](p)


def main() -> int:
    return run_worker(_main)


if __name__ == "__main__":
    sys.exit(main())

"""The abusive clients of the hostile-clients scenario (issue 9's table), one function each.

``python -m bench.hostile_worker '{"abuse": NAME, "address": "127.0.0.1:P", "unix": PATH,
"steady": NAMESPACE, "server_pid": PID, ...sizes}'``

With ``"wait_start": true`` the process first imports what the abuses use, prints
``{"loaded": true}`` and waits for a ``start`` line on stdin (the scenario starts its
abusive processes before the calm phase, so that neither phase includes a Python
process loading grpc on the server's cores). Each abuse does its setup, calls ``go()``
(which prints ``{"ready": true}`` and waits for a
``go`` line on stdin, so that several processes of one abuse can start together), does
its abusive thing, and returns what it got: ``{"got": "one line", ...details}``, printed
as ``{"result": ...}``. What the server answers is recorded, never trusted: a refused
request (the fixed server refuses several of these) is a result like any other, and an
exception in the client is caught and reported as the result. Every call is bounded by
``call_timeout`` seconds, every wait by the abuse's own sizes.

Run one alone against a server of your own (it needs the fields above), or through the
scenario: ``python -m bench run --scenario grpc_hostile --abuse NAME``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._util import emit, run_worker

Go = Callable[[], Awaitable[None]]
NS = "hostile"  # namespace of abuses that do not aim at the steady one
_MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, protobuf Timestamp's upper bound
_CD_NAMESPACE = "containerd-namespace"


def _code_name(code: int) -> str:
    import grpc

    for c in grpc.StatusCode:
        if c.value[0] == code:
            return str(c.name)
    return str(code)


def _exc_code(exc: BaseException) -> str:
    """The status code name of a failed call, else the exception's type name."""
    code = getattr(exc, "code", None)
    if callable(code):
        with contextlib.suppress(Exception):
            return str(code().name)
    return type(exc).__name__


def _channel(p: dict[str, Any], *, unix: bool = False, own: bool = False) -> Any:
    """A channel to the server (TCP, or the unix socket); *own*: its own TCP connection."""
    import grpc

    options = [("grpc.max_receive_message_length", 64 << 20)]
    if own:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.aio.insecure_channel(f"unix:{p['unix']}" if unix else p["address"],
                                     options=options)


async def _timed(call: Awaitable[Any]) -> tuple[str, float, Any]:
    """(status code name, seconds, response or error details) of one call."""
    import grpc

    t0 = time.monotonic()
    try:
        resp = await call
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, time.monotonic() - t0, (exc.details() or "")[:160]
    except TimeoutError:
        return "CLIENT_TIMEOUT", time.monotonic() - t0, ""
    return "OK", time.monotonic() - t0, resp


def _stubs(channel: Any) -> tuple[Any, Any, Any]:
    from broadcaster.containerd.services.events.v1.events_pb2_grpc import EventsStub
    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    return pb, BroadcasterStub(channel), EventsStub(channel)


def _event(pb: Any, namespace: str = NS, topic: str = "/hostile", **kw: Any) -> Any:
    from google.protobuf.any_pb2 import Any as PbAny

    return pb.PublishRequest(namespace=namespace, topic=topic,
                             payload=PbAny(type_url="bench/hostile", value=b"x"), **kw)


class _Sub:
    """One Subscribe call: requests through a queue; a reader task answers Heartbeats
    (unless *ack* is false), counts what comes, and hands AddResult/Removed over."""

    def __init__(self, stub: Any, *, ack: bool = True, step_timeout: float = 30.0) -> None:
        from broadcaster.v1 import broadcaster_pb2 as pb

        self._pb = pb
        self.ack = ack
        self.step_timeout = step_timeout
        self._q: asyncio.Queue[Any] = asyncio.Queue()
        self._control: asyncio.Queue[Any] = asyncio.Queue()
        self.counts: collections.Counter[str] = collections.Counter()
        self.ended: collections.Counter[str] = collections.Counter()
        self.status: str | None = None
        self.call = stub.Subscribe(self._requests())
        self._task = asyncio.create_task(self._read())

    async def _requests(self) -> Any:
        while (item := await self._q.get()) is not None:
            yield item

    async def _read(self) -> None:
        import grpc

        pb = self._pb
        try:
            async for msg in self.call:
                kind = msg.WhichOneof("kind")
                self.counts[kind] += 1
                if kind == "heartbeat" and self.ack:
                    self._q.put_nowait(pb.SubscribeRequest(
                        ack=pb.SubscribeRequest.Ack(heartbeat_id=msg.heartbeat.heartbeat_id)))
                elif kind == "event_batch":
                    self.counts["deliveries"] += sum(
                        len(d.subscription_ids) for d in msg.event_batch.deliveries)
                elif kind == "subscription_ended":
                    self.ended[msg.subscription_ended.reason] += 1
                elif kind in ("add_result", "removed"):
                    self._control.put_nowait(msg)
            self.status = "OK"
        except grpc.aio.AioRpcError as exc:
            self.status = exc.code().name
        finally:
            self._control.put_nowait(None)

    async def add(self, **fields: Any) -> str:
        """Send an Add; its outcome: "OK", the refusal's code, or how the stream ended."""
        pb = self._pb
        self._q.put_nowait(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(**fields)))
        try:
            msg = await asyncio.wait_for(self._control.get(), self.step_timeout)
        except TimeoutError:
            return "CLIENT_TIMEOUT"
        if msg is None:
            self._control.put_nowait(None)
            return f"stream ended {self.status}"
        res = msg.add_result
        return "OK" if res.ok else _code_name(res.error.code)

    async def remove(self, subscription_id: str) -> str:
        pb = self._pb
        self._q.put_nowait(pb.SubscribeRequest(
            remove=pb.SubscribeRequest.Remove(subscription_id=subscription_id)))
        try:
            msg = await asyncio.wait_for(self._control.get(), self.step_timeout)
        except TimeoutError:
            return "CLIENT_TIMEOUT"
        if msg is None:
            self._control.put_nowait(None)
            return f"stream ended {self.status}"
        return "OK"

    def send(self, request: Any) -> None:
        self._q.put_nowait(request)

    async def close(self) -> None:
        self._q.put_nowait(None)
        self.call.cancel()
        with contextlib.suppress(BaseException):
            await self._task


def _counts(c: collections.Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"


async def _subscriptions(stub: Any, pb: Any) -> int:
    return int((await stub.Stats(pb.StatsRequest(), timeout=10)).subscriptions)


async def _until_subscribed(stub: Any, pb: Any, want: int, within: float = 10.0) -> bool:
    """Poll Stats until the server holds *want* subscriptions (bounded)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if await _subscriptions(stub, pb) >= want:
                return True
        await asyncio.sleep(0.05)
    return False


# -- the abuses ------------------------------------------------------------------------


async def regex_filter(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """A catastrophic regex (``labels."x"~="(a+)+$"``) on a subscription, then one event
    whose label makes it backtrack (``"a" * n + "!"``); the same filter sent through the
    containerd API, as ``ctr events`` can."""
    from broadcaster.containerd.services.events.v1 import events_pb2

    await go()
    expr = 'labels."x"~="(a+)+$"'
    async with _channel(p) as ch:
        pb, stub, events = _stubs(ch)
        sub = _Sub(stub)
        add = await sub.add(subscription_id="re", namespaces=[NS], filters=[expr])
        cd = events.Subscribe(events_pb2.SubscribeRequest(filters=[expr]))
        first = asyncio.create_task(cd.read())
        done, _ = await asyncio.wait({first}, timeout=0.5)
        cd_code = "open" if not done else (await _timed(first))[0]
        label = "a" * p["a_count"] + "!"
        code, secs, _ = await _timed(stub.Publish(_event(pb, labels={"x": label}),
                                                 timeout=p["call_timeout"]))
        cd.cancel()
        first.cancel()
        with contextlib.suppress(BaseException):
            await first
        await sub.close()
    return {"got": f"Add {add}; containerd Subscribe {cd_code}; Publish of a {len(label)}-char "
                   f"label {code} in {secs:.2f} s",
            "add": add, "containerd_subscribe": cd_code, "publish": code,
            "publish_s": round(secs, 3)}


async def block_blind_acks(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """BLOCK policy, max_events 1, block_timeout 10^9 s on the steady namespace; reads
    nothing after its AddResult and sends ``Ack(heartbeat_id=0)`` every second."""
    import grpc
    from google.protobuf.duration_pb2 import Duration

    await go()
    async with _channel(p, own=True) as ch:
        pb, stub, _ = _stubs(ch)
        q: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> Any:
            while (item := await q.get()) is not None:
                yield item

        call = stub.Subscribe(requests())
        q.put_nowait(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
            subscription_id="blk", namespaces=[p["steady"]],
            policy=pb.OverflowPolicy(kind=pb.OverflowPolicy.BLOCK, max_events=1,
                                     block_timeout=Duration(seconds=10**9),
                                     fallback=pb.OverflowPolicy.DROP_NEWEST))))
        code, _, first = await _timed(asyncio.wait_for(call.read(), p["call_timeout"]))
        if code == "OK" and first is not grpc.aio.EOF and not first.add_result.ok:
            code = _code_name(first.add_result.error.code)
        if code != "OK":
            call.cancel()
            return {"got": f"Add {code} (refused)", "add": code}
        acks = 0
        end = time.monotonic() + p["hold"]
        while time.monotonic() < end and not call.done():
            q.put_nowait(pb.SubscribeRequest(ack=pb.SubscribeRequest.Ack(heartbeat_id=0)))
            acks += 1
            await asyncio.sleep(1.0)
        ended_early = call.done()
        # now read what the server sent meanwhile: was the subscription ended?
        reasons: collections.Counter[str] = collections.Counter()
        status = "open"
        read_end = time.monotonic() + 3.0
        try:
            while time.monotonic() < read_end:
                msg = await asyncio.wait_for(call.read(), read_end - time.monotonic())
                if msg is grpc.aio.EOF:
                    status = "ended OK"
                    break
                if msg.WhichOneof("kind") == "subscription_ended":
                    reasons[msg.subscription_ended.reason] += 1
        except grpc.aio.AioRpcError as exc:
            status = f"ended {exc.code().name}"
        except TimeoutError:
            pass
        call.cancel()
    return {"got": f"Add OK; {acks} blind acks over {p['hold']:g} s; stream "
                   f"{'ended by the server' if ended_early else status}; subscription ended: "
                   f"{_counts(reasons)}",
            "add": "OK", "blind_acks": acks, "ended_early": ended_early, "status": status,
            "ended": dict(reasons)}


async def nothing(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """The control: begin and end without a word to the server. Its window (the hold
    after it reported) against the calm phase is what the 2x target reads when no client
    does anything: the noise of the measurement on this box."""
    await go()
    return {"got": "nothing (control: no call to the server)"}


async def many_namespaces_add(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """One Add naming 1,025 namespaces; then a publish into a namespace not seen before."""
    await go()
    async with _channel(p) as ch:
        pb, stub, _ = _stubs(ch)
        sub = _Sub(stub)
        n = p["namespaces"]
        add = await sub.add(subscription_id="many",
                            namespaces=[f"{NS}-{i}" for i in range(n)])
        await sub.close()
        after, _, _ = await _timed(stub.Publish(_event(pb, namespace=f"{NS}-fresh"),
                                               timeout=p["call_timeout"]))
        code, _, stats = await _timed(stub.Stats(pb.StatsRequest(), timeout=10))
        left = len(stats.namespaces) if code == "OK" else None
    return {"got": f"Add of {n} namespaces {add}; then Publish into a new namespace {after}; "
                   f"{left} namespaces on the server after",
            "add": add, "publish_after": after, "namespaces_after": left}


def _server_nofile(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


async def idle_connections(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """Idle HTTP/2 connections (preface + SETTINGS, then nothing) up to the server's soft
    file-descriptor limit (+64) or ``connections``, whichever is lower, held ``hold`` s."""
    await go()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = _server_nofile(p["server_pid"])
    target = p["connections"] if limit is None else min(p["connections"], limit + 64)
    host, port = p["address"].rsplit(":", 1)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    first_error = None
    failed = 0
    closed = 0

    async def watch(reader: asyncio.StreamReader) -> None:
        nonlocal closed
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        closed += 1

    watchers = []
    t0 = time.monotonic()
    for _ in range(target):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2.0)
        except (OSError, TimeoutError) as exc:
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:120]
            if failed >= 3:
                break
            continue
        w.write(preface)
        conns.append((r, w))
        watchers.append(asyncio.create_task(watch(r)))
    opened_s = time.monotonic() - t0
    await asyncio.sleep(p["hold"])
    closed_in_hold = closed
    for _, w in conns:
        w.close()
    for t in watchers:
        t.cancel()
    return {"got": f"{len(conns)} idle connections opened (aim {target}; server soft limit "
                   f"{limit}); {closed_in_hold} closed by the server within {p['hold']:g} s"
                   + (f"; connect failed: {first_error}" if first_error else ""),
            "opened": len(conns), "target": target, "server_nofile": limit,
            "closed_by_server": closed_in_hold, "connect_failures": failed,
            "first_error": first_error, "open_seconds": round(opened_s, 2)}


def _filter_list(i: int, size: int) -> list[str]:
    """Distinct filters (about 100 bytes each) adding up to *size* bytes."""
    pad = "v" * 60
    return [f'labels."k{i}x{j}"=="{pad}{j}"' for j in range(max(1, size // 100))]


async def filter_lists(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """``lists`` distinct filter lists of ``list_bytes`` each, added and removed one after
    the other on one stream."""
    await go()
    codes: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()
    async with _channel(p) as ch:
        _, stub, _ = _stubs(ch)
        sub = _Sub(stub, step_timeout=p["call_timeout"])
        for i in range(p["lists"]):
            code = await sub.add(subscription_id=f"f{i}", namespaces=[NS],
                                 filters=_filter_list(i, p["list_bytes"]))
            codes[code] += 1
            if code == "OK":
                await sub.remove(f"f{i}")
            elif code.startswith("stream ended"):
                break
        await sub.close()
    mb = p["list_bytes"] / 1e6
    return {"got": f"{p['lists']} lists of {mb:.1f} MB added+removed: Add {_counts(codes)}",
            "adds": dict(codes), "seconds": round(time.monotonic() - t0, 2)}


async def retention_fill(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """Fill ``namespaces`` namespaces' retention: ``per_namespace`` bytes each (a bit over
    the configured ``max_bytes``) in 60 KiB events, 50 per PublishStream batch."""
    from google.protobuf.any_pb2 import Any as PbAny

    await go()
    size, per_batch = 60 * 1024, 50
    codes: collections.Counter[str] = collections.Counter()
    body = b"r" * size
    async with _channel(p) as ch:
        pb, stub, _ = _stubs(ch)
        q: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> Any:
            while (item := await q.get()) is not None:
                yield item

        call = stub.PublishStream(requests())
        events = math.ceil(p["per_namespace"] / size)
        bid = 0
        try:
            for n in range(p["namespaces"]):
                for start in range(0, events, per_batch):
                    bid += 1
                    q.put_nowait(pb.PublishStreamRequest(batch_id=bid, events=[
                        pb.PublishRequest(namespace=f"{NS}-r{n}", topic="/fill",
                                          payload=PbAny(type_url="bench/fill", value=body))
                        for _ in range(min(per_batch, events - start))]))
                    resp = await asyncio.wait_for(call.read(), p["call_timeout"])
                    codes["OK" if not resp.HasField("error")
                          else _code_name(resp.error.code)] += 1
        except Exception as exc:  # the stream was ended or refused as a whole
            codes[_exc_code(exc)] += 1
        q.put_nowait(None)
        call.cancel()
        code, _, stats = await _timed(stub.Stats(pb.StatsRequest(), timeout=10))
        retained = (sum(ns.retained_bytes for ns in stats.namespaces
                        if ns.namespace.startswith(f"{NS}-r")) if code == "OK" else None)
    mib = p["per_namespace"] / 2**20
    return {"got": f"{p['namespaces']} namespaces x {mib:.0f} MiB published: batches "
                   f"{_counts(codes)}; {retained / 2**20 if retained else 0:.0f} MiB retained",
            "batches": dict(codes), "retained_bytes": retained}


async def huge_batch(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """One PublishStream batch of ``events`` tiny events (0: as many as fit in the
    server's 4 MiB message limit)."""
    await go()
    async with _channel(p) as ch:
        pb, stub, _ = _stubs(ch)
        one = pb.PublishRequest(namespace="hb", topic="/b")
        n = p["events"] or (4 * 2**20 - 64) // (one.ByteSize() + 2 + 1)
        req = pb.PublishStreamRequest(batch_id=1, events=[one] * n)
        q: asyncio.Queue[Any] = asyncio.Queue()
        q.put_nowait(req)

        async def requests() -> Any:
            while (item := await q.get()) is not None:
                yield item

        call = stub.PublishStream(requests())
        code, secs, resp = await _timed(asyncio.wait_for(call.read(), p["call_timeout"]))
        if code == "OK" and hasattr(resp, "HasField") and resp.HasField("error"):
            code = _code_name(resp.error.code)
        q.put_nowait(None)
        call.cancel()
    return {"got": f"one batch of {n:,} events ({req.ByteSize() / 2**20:.1f} MiB): {code} in "
                   f"{secs:.2f} s", "events": n, "code": code, "seconds": round(secs, 3)}


async def many_filters(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """One subscription on the steady namespace with ``filters`` filters (none matches,
    each is evaluated), reading and acking for ``hold`` s."""
    await go()
    async with _channel(p) as ch:
        _, stub, _ = _stubs(ch)
        sub = _Sub(stub)
        add = await sub.add(subscription_id="mf", namespaces=[p["steady"]],
                            filters=[f'labels."k{i}"=="v{i}"' for i in range(p["filters"])])
        await asyncio.sleep(p["hold"])
        await sub.close()
    return {"got": f"Add of {p['filters']} filters {add}; held {p['hold']:g} s",
            "add": add, "deliveries": sub.counts["deliveries"]}


async def all_ns_subscriptions(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """``namespaces`` namespaces created (one event each), then ``subscriptions``
    all-namespace subscriptions (100 per stream, 10 streams per connection; a topic filter
    so that the steady load is not delivered to them), every heartbeat acked, held
    ``hold`` s."""
    await go()
    n_ns, n_subs = p["namespaces"], p["subscriptions"]
    per_stream = 100
    n_streams = math.ceil(n_subs / per_stream)
    channels = [_channel(p, own=True) for _ in range(math.ceil(n_streams / 10))]
    try:
        pb, stub0, _ = _stubs(channels[0])
        q: asyncio.Queue[Any] = asyncio.Queue()
        q.put_nowait(pb.PublishStreamRequest(batch_id=1, events=[
            _event(pb, namespace=f"{NS}-ns{i}") for i in range(n_ns)]))

        async def requests() -> Any:
            while (item := await q.get()) is not None:
                yield item

        pcall = stub0.PublishStream(requests())
        created, _, resp = await _timed(asyncio.wait_for(pcall.read(), p["call_timeout"]))
        if created == "OK" and hasattr(resp, "HasField") and resp.HasField("error"):
            created = _code_name(resp.error.code)
        q.put_nowait(None)
        pcall.cancel()
        subs = [_Sub(_stubs(channels[i // 10])[1]) for i in range(n_streams)]

        async def fill(j: int, sub: _Sub) -> list[str]:
            ids = range(j * per_stream, min(n_subs, (j + 1) * per_stream))
            return [await sub.add(subscription_id=f"a{i}", namespaces=[],
                                  filters=['topic=="/hostile-none"']) for i in ids]

        codes = collections.Counter(c for cs in await asyncio.gather(
            *(fill(j, s) for j, s in enumerate(subs))) for c in cs)
        await asyncio.sleep(p["hold"])
        ended = sum((s.ended for s in subs), collections.Counter())
        heartbeats = sum(s.counts["heartbeat"] for s in subs)
        for s in subs:
            await s.close()
    finally:
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
    return {"got": f"{n_ns} namespaces created ({created}); {n_subs} all-namespace "
                   f"subscriptions: Add {_counts(codes)}; ended by the server while acking "
                   f"every heartbeat: {_counts(ended)}",
            "create": created, "adds": dict(codes), "ended": dict(ended),
            "heartbeats": heartbeats}


async def fanout_streams(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """``streams`` Subscribe streams (50 per connection, under the server's 100 streams
    per connection) in this process, one subscription each on namespace hostile-fan;
    process 0 then publishes one event every 0.5 s for ``hold`` s (on a connection of
    its own), so each goes to every stream of every process."""
    n = p["streams"]
    channels = [_channel(p, own=True) for _ in range(1 + math.ceil(n / 50))]
    try:
        pb, stub0, _ = _stubs(channels[0])
        subs = [_Sub(_stubs(channels[1 + i // 50])[1]) for i in range(n)]
        adds = collections.Counter(await asyncio.gather(*(
            s.add(subscription_id="f", namespaces=[f"{NS}-fan"]) for s in subs)))
        await go()
        codes: collections.Counter[str] = collections.Counter()
        rtts: list[float] = []
        end = time.monotonic() + p["hold"]
        while time.monotonic() < end:
            if p.get("index", 0) == 0:
                code, secs, _ = await _timed(stub0.Publish(
                    _event(pb, namespace=f"{NS}-fan"), timeout=p["call_timeout"]))
                codes[code] += 1
                rtts.append(secs)
            await asyncio.sleep(0.5)
        # let the last event land: until no delivery came for 1 s (at most 10 s)
        last, still = -1, time.monotonic()
        settle_end = time.monotonic() + 10.0
        while time.monotonic() < settle_end:
            deliveries = sum(s.counts["deliveries"] for s in subs)
            if deliveries != last:
                last, still = deliveries, time.monotonic()
            elif time.monotonic() - still >= 1.0:
                break
            await asyncio.sleep(0.1)
        deliveries = sum(s.counts["deliveries"] for s in subs)
        for s in subs:
            await s.close()
    finally:
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
    pub = (f"; published {_counts(codes)}, slowest publish {max(rtts):.2f} s" if rtts else "")
    return {"got": f"{n} streams: Add {_counts(adds)}{pub}; {deliveries} deliveries received",
            "adds": dict(adds), "publish": dict(codes), "deliveries": deliveries,
            "max_publish_s": round(max(rtts), 3) if rtts else None}


async def timestamp_9999(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """An event timestamped after 9999-12-31 (outside protobuf's Timestamp range) on both
    APIs, with a containerd subscriber watching."""
    from google.protobuf.any_pb2 import Any as PbAny
    from google.protobuf.timestamp_pb2 import Timestamp

    from broadcaster.containerd.services.events.v1 import events_pb2

    await go()
    ts = Timestamp(seconds=_MAX_TIMESTAMP + 86_400)
    async with _channel(p) as ch:
        pb, stub, events = _stubs(ch)
        before = await _subscriptions(stub, pb)
        watcher = events.Subscribe(events_pb2.SubscribeRequest(
            filters=[f"namespace=={NS}-ts"]))
        seen: list[int] = []
        status = "open"

        async def watch() -> None:
            nonlocal status
            try:
                async for env in watcher:
                    seen.append(env.timestamp.seconds)
            except Exception as exc:
                status = _exc_code(exc)

        task = asyncio.create_task(watch())
        await _until_subscribed(stub, pb, before + 1)
        v1, _, _ = await _timed(stub.Publish(_event(pb, namespace=f"{NS}-ts", topic="/ts",
                                                    timestamp=ts), timeout=p["call_timeout"]))
        fwd, _, _ = await _timed(events.Forward(events_pb2.ForwardRequest(
            envelope=events_pb2.Envelope(timestamp=ts, namespace=f"{NS}-ts", topic="/ts",
                                         event=PbAny(type_url="containerd.events.TaskExit"))),
            timeout=p["call_timeout"]))
        end = time.monotonic() + 2.0
        while len(seen) < (v1 == "OK") + (fwd == "OK") and time.monotonic() < end:
            await asyncio.sleep(0.05)
        watcher.cancel()
        task.cancel()
    return {"got": f"v1 Publish {v1}; containerd Forward {fwd}; the containerd subscriber got "
                   f"{len(seen)} envelope(s), stream {status}",
            "publish": v1, "forward": fwd, "envelopes": len(seen), "subscriber": status}


async def trailing_newline(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """Names with a trailing newline: namespace ``"k8s.io\\n"``, topic
    ``"/tasks/exit\\n"``, on both APIs and in a Subscribe Add."""
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.containerd.services.events.v1 import events_pb2

    await go()
    async with _channel(p) as ch:
        pb, stub, events = _stubs(ch)
        t = p["call_timeout"]
        out = {
            "v1 namespace": (await _timed(stub.Publish(
                _event(pb, namespace="k8s.io\n", topic="/tasks/exit"), timeout=t)))[0],
            "v1 topic": (await _timed(stub.Publish(
                _event(pb, namespace="k8s.io", topic="/tasks/exit\n"), timeout=t)))[0],
            "containerd Forward namespace": (await _timed(events.Forward(
                events_pb2.ForwardRequest(envelope=events_pb2.Envelope(
                    namespace="k8s.io\n", topic="/tasks/exit",
                    event=PbAny(type_url="containerd.events.TaskExit"))), timeout=t)))[0],
            "containerd Publish topic": (await _timed(events.Publish(
                events_pb2.PublishRequest(topic="/tasks/exit\n",
                                          event=PbAny(type_url="containerd.events.TaskExit")),
                metadata=((_CD_NAMESPACE, "k8s.io"),), timeout=t)))[0],
        }
        sub = _Sub(stub)
        out["Subscribe namespace"] = await sub.add(subscription_id="nl",
                                                   namespaces=["k8s.io\n"])
        await sub.close()
    return {"got": "; ".join(f"{k} {v}" for k, v in out.items()), "codes": out}


async def huge_type_url(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """A 3.5 MB ``type_url`` on both APIs."""
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.containerd.services.events.v1 import events_pb2

    await go()
    url = "x" * p["type_url_bytes"]
    async with _channel(p) as ch:
        pb, stub, events = _stubs(ch)
        v1, _, _ = await _timed(stub.Publish(pb.PublishRequest(
            namespace=NS, topic="/t", payload=PbAny(type_url=url, value=b"x")),
            timeout=p["call_timeout"]))
        cd, _, _ = await _timed(events.Publish(
            events_pb2.PublishRequest(topic="/t", event=PbAny(type_url=url, value=b"x")),
            metadata=((_CD_NAMESPACE, NS),), timeout=p["call_timeout"]))
    return {"got": f"{len(url) / 1e6:.1f} MB type_url: v1 Publish {v1}; containerd Publish {cd}",
            "publish": v1, "containerd_publish": cd}


#: (method, kind): uu unary-unary, us unary-stream, ss stream-stream
GARBAGE_METHODS = [
    ("/broadcaster.v1.Broadcaster/Publish", "uu"),
    ("/broadcaster.v1.Broadcaster/PublishStream", "ss"),
    ("/broadcaster.v1.Broadcaster/Subscribe", "ss"),
    ("/broadcaster.v1.Broadcaster/Stats", "uu"),
    ("/containerd.services.events.v1.Events/Publish", "uu"),
    ("/containerd.services.events.v1.Events/Forward", "uu"),
    ("/containerd.services.events.v1.Events/Subscribe", "us"),
    ("/containerd.services.introspection.v1.Introspection/Server", "uu"),
    ("/grpc.health.v1.Health/Check", "uu"),
]


async def garbage_bytes(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """Bytes that are no protobuf message, as the request of every method."""
    await go()
    garbage = b"\xff\xfe\xfd\x07garbage\x00\x01" * 8
    md = ((_CD_NAMESPACE, NS),)
    codes: dict[str, str] = {}
    details: dict[str, str] = {}
    async with _channel(p) as ch:
        for method, kind in GARBAGE_METHODS:
            t = p["call_timeout"]
            if kind == "uu":
                call: Awaitable[Any] = ch.unary_unary(method)(garbage, timeout=t, metadata=md)
            elif kind == "us":
                call = ch.unary_stream(method)(garbage, timeout=t, metadata=md).read()
            else:
                call = ch.stream_stream(method)(iter([garbage]), timeout=t, metadata=md).read()
            code, _, info = await _timed(asyncio.wait_for(call, t))
            short = method.rsplit(".", 1)[-1]
            codes[short] = code
            details[short] = info if isinstance(info, str) else ""
    return {"got": "; ".join(f"{k} {v}" for k, v in codes.items()), "codes": codes,
            "details": details}


def _ctr_env() -> dict[str, str]:
    drop = {"CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE",
            "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


async def ctr_events_flood(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """``ctr events`` (over the unix socket, ``namespace==hostile-ctr``) while ``rate``
    events/s of containerd's TaskExit go into that namespace for ``seconds`` s."""
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.containerd.events.task_pb2 import TaskExit

    await go()
    exit_any = PbAny(type_url="containerd.events.TaskExit",
                     value=TaskExit(container_id="c", id="c", pid=1).SerializeToString())
    ctr = shutil.which("ctr")
    if ctr is None:
        return {"got": "ctr not installed (Debian package containerd): not run",
                "skipped": True}
    async with _channel(p) as ch:
        pb, stub, _ = _stubs(ch)
        before = await _subscriptions(stub, pb)
        proc = await asyncio.create_subprocess_exec(
            ctr, "--address", p["unix"], "events", f"namespace=={NS}-ctr",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_ctr_env())
        lines = 0
        err_tail = b""

        async def count() -> None:
            nonlocal lines
            assert proc.stdout is not None
            while await proc.stdout.readline():
                lines += 1

        async def errors_of_ctr() -> None:  # drained, or a chatty ctr would block on it
            nonlocal err_tail
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                err_tail = (err_tail + chunk)[-600:]

        counter = asyncio.create_task(count())
        err_reader = asyncio.create_task(errors_of_ctr())
        subscribed = await _until_subscribed(stub, pb, before + 1)
        q: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> Any:
            while (item := await q.get()) is not None:
                yield item

        call = stub.PublishStream(requests())
        credits = asyncio.Semaphore(8)
        errors = 0

        async def acks() -> None:
            nonlocal errors
            with contextlib.suppress(Exception):
                async for resp in call:
                    errors += resp.HasField("error")
                    credits.release()

        acker = asyncio.create_task(acks())
        rate, sent, bid = p["rate"], 0, 0
        total = int(rate * p["seconds"])
        t0 = time.monotonic()
        while sent < total and time.monotonic() - t0 < p["seconds"] + p["call_timeout"]:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            n = min(100, due - sent)
            if n <= 0:
                await asyncio.sleep(0.001)
                continue
            try:
                await asyncio.wait_for(credits.acquire(), p["call_timeout"])
            except TimeoutError:
                break
            bid += 1
            q.put_nowait(pb.PublishStreamRequest(batch_id=bid, events=[
                pb.PublishRequest(namespace=f"{NS}-ctr", topic="/tasks/exit", payload=exit_any)
                for _ in range(n)]))
            sent += n
        pub_s = time.monotonic() - t0
        for _ in range(8):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(credits.acquire(), 5.0)
        q.put_nowait(None)
        acker.cancel()
        last, still = -1, time.monotonic()  # wait until ctr stops printing (bounded)
        end = time.monotonic() + 10.0
        while time.monotonic() < end and proc.returncode is None:
            if lines != last:
                last, still = lines, time.monotonic()
            elif time.monotonic() - still > 1.0:
                break
            await asyncio.sleep(0.05)
        exited = proc.returncode
        if exited is None:
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(err_reader, 2.0)
        counter.cancel()
        err = err_tail.decode(errors="replace").strip()[-300:]
    pct = 100.0 * lines / sent if sent else 0.0
    fate = "kept running" if exited is None else f"exited {exited}" + (f": {err}" if err else "")
    return {"got": f"published {sent:,} at {sent / pub_s:,.0f}/s; ctr printed {lines:,} "
                   f"({pct:.0f} %); ctr {fate}",
            "published": sent, "printed": lines, "printed_pct": round(pct, 1),
            "ctr_exit": exited, "ctr_stderr": err, "subscribed": subscribed,
            "publish_errors": errors}


async def concurrent_unary_publish(p: dict[str, Any], go: Go) -> dict[str, Any]:
    """64 concurrent unary containerd Publish calls on one connection, ``calls`` in all,
    while 4 containerd subscribers of that namespace never read."""
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.containerd.services.events.v1 import events_pb2

    await go()
    stall_channels = [_channel(p, own=True) for _ in range(4)]
    async with _channel(p, own=True) as ch:
        pb, stub, events = _stubs(ch)
        before = await _subscriptions(stub, pb)
        stalled = [_stubs(c)[2].Subscribe(events_pb2.SubscribeRequest(
            filters=[f"namespace=={NS}-unary"])) for c in stall_channels]
        await _until_subscribed(stub, pb, before + 4)
        req = events_pb2.PublishRequest(topic="/unary", event=PbAny(
            type_url="containerd.events.TaskExit", value=b"\x0a\x02id" + b"x" * 100))
        md = ((_CD_NAMESPACE, f"{NS}-unary"),)
        codes: collections.Counter[str] = collections.Counter()
        first_failure: list[str] = []
        left = p["calls"]
        t0 = time.monotonic()

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                code, _, info = await _timed(events.Publish(req, metadata=md,
                                                            timeout=p["call_timeout"]))
                codes[code] += 1
                if code != "OK" and not first_failure:
                    first_failure.append(f"{code}: {info}")

        await asyncio.gather(*(worker() for _ in range(p["concurrency"])))
        secs = time.monotonic() - t0
        for s in stalled:
            s.cancel()
    await asyncio.gather(*(c.close() for c in stall_channels), return_exceptions=True)
    return {"got": f"{p['calls']:,} calls, {p['concurrency']} at once on one connection, "
                   f"4 subscribers stalled: {_counts(codes)}"
                   + (f"; first failure {first_failure[0]}" if first_failure else ""),
            "codes": dict(codes), "first_failure": first_failure[:1],
            "calls_per_s": round(p["calls"] / secs, 1)}


@dataclass(frozen=True)
class Abuse:
    """One row of the table: what it does, and its sizes in quick and full runs."""

    name: str
    title: str
    run: Callable[[dict[str, Any], Go], Awaitable[dict[str, Any]]]
    quick: dict[str, Any] = field(default_factory=dict)
    full: dict[str, Any] = field(default_factory=dict)
    #: processes running this abuse at once (quick, full)
    procs: tuple[int, int] = (1, 1)
    #: a control run, not an abuse: reported beside the abuses, not counted among them
    control: bool = False


ABUSES: dict[str, Abuse] = {a.name: a for a in [
    Abuse("nothing", "control: the abusive process begins and ends without a call",
          nothing, control=True),
    Abuse("regex_filter", 'catastrophic regex filter labels."x"~="(a+)+$" + a matching label',
          regex_filter, {"a_count": 22}, {"a_count": 25}),
    Abuse("block_blind_acks", "BLOCK subscriber (max_events 1, block_timeout 1e9 s) on the "
          "steady namespace that never reads and sends blind acks", block_blind_acks,
          {"hold": 4.0}, {"hold": 10.0}),
    Abuse("many_namespaces_add", "one Add naming 1,025 namespaces", many_namespaces_add,
          {"namespaces": 1025}, {"namespaces": 1025}),
    Abuse("idle_connections", "idle HTTP/2 connections up to the fd limit (capped)",
          idle_connections, {"connections": 500, "hold": 3.0},
          {"connections": 5000, "hold": 6.0}),
    Abuse("filter_lists", "large distinct filter lists added and removed", filter_lists,
          {"lists": 4, "list_bytes": 1_000_000}, {"lists": 30, "list_bytes": 3_400_000}),
    Abuse("retention_fill", "retention filled in many namespaces", retention_fill,
          {"namespaces": 4, "per_namespace": 18 * 2**20},
          {"namespaces": 20, "per_namespace": 18 * 2**20}),
    Abuse("huge_batch", "one huge PublishStream batch", huge_batch,
          {"events": 50_000}, {"events": 0}),
    Abuse("many_filters", "1,000 filters on one subscription of the steady namespace",
          many_filters, {"filters": 1000, "hold": 3.0}, {"filters": 1000, "hold": 8.0}),
    Abuse("all_ns_subscriptions", "all-namespace subscriptions over many namespaces, "
          "heartbeats acked", all_ns_subscriptions,
          {"namespaces": 100, "subscriptions": 100, "hold": 3.0},
          {"namespaces": 1000, "subscriptions": 1000, "hold": 8.0}),
    Abuse("fanout_streams", "one event every 0.5 s fanned out to many streams",
          fanout_streams, {"streams": 500, "hold": 3.0}, {"streams": 2500, "hold": 6.0},
          procs=(1, 2)),
    Abuse("timestamp_9999", "a timestamp after year 9999", timestamp_9999),
    Abuse("trailing_newline", "names with a trailing newline", trailing_newline),
    Abuse("huge_type_url", "a 3.5 MB type_url", huge_type_url,
          {"type_url_bytes": 3_500_000}, {"type_url_bytes": 3_500_000}),
    Abuse("garbage_bytes", "garbage bytes on every method", garbage_bytes),
    Abuse("ctr_events_flood", "ctr events at 10-20k events/s", ctr_events_flood,
          {"rate": 10_000, "seconds": 1.0}, {"rate": 15_000, "seconds": 3.0}),
    Abuse("concurrent_unary_publish", "64 concurrent unary containerd Publish calls on one "
          "connection while 4 subscribers stall", concurrent_unary_publish,
          {"calls": 2_000, "concurrency": 64}, {"calls": 26_000, "concurrency": 64}),
]}


def _load() -> None:
    """Import what the abuses use (grpc, the generated modules), so that an abuse started
    afterwards spends no CPU on loading them."""
    import grpc  # noqa: F401
    from google.protobuf import any_pb2, duration_pb2, timestamp_pb2  # noqa: F401

    from broadcaster.containerd.events import task_pb2  # noqa: F401
    from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc  # noqa: F401
    from broadcaster.v1 import broadcaster_pb2, broadcaster_pb2_grpc  # noqa: F401


async def _main(p: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    went = False
    if p.get("wait_start"):  # loaded ahead of time: start on a ``start`` line
        _load()
        emit(loaded=True)
        await reader.readline()

    async def go() -> None:
        nonlocal went
        emit(ready=True)
        await reader.readline()
        went = True

    p = {"call_timeout": 30.0, **p}
    try:
        result = await ABUSES[p["abuse"]].run(p, go)
    except Exception as exc:  # the abusive client broke: that is its result, not a crash
        result = {"got": f"client failed: {type(exc).__name__}: {exc}"[:300],
                  "traceback": traceback.format_exc()[-2000:]}
    result["cpu_s"] = time.process_time()
    emit(result=result, went=went)


def main() -> int:
    return run_worker(_main)


if __name__ == "__main__":
    sys.exit(main())

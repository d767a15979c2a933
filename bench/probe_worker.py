"""What a bystander sees while a client misbehaves (the hostile-clients scenario): the round
trip of a unary Publish into a namespace of its own, and gRPC Health Check latency over a
kept TCP connection, over the unix socket, and over a new TCP connection each time.

``python -m bench.probe_worker '{"address": "127.0.0.1:P", "unix": PATH, ...}'``

Prints ``{"ready": true}``, then probes each series in its own loop (one call at a time,
every ``interval`` s, each call bounded by ``call_timeout`` s) and tags every sample with
the phase given by the last ``phase K`` line on stdin (the phase in force when the call
started). ``stop`` (or end of input) prints ``{"result": {series: {phase: figures}}}``:
nearest-rank p50/p99/max in ms over every call (a failed call counts with the time it
took), the number of calls and the failures by status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from bench._util import emit, percentiles, run_worker

#: series -> seconds between the starts of two calls
INTERVALS = {"publish": 0.02, "health_tcp": 0.02, "health_unix": 0.05,
             "health_new_conn": 0.2}


async def run(p: dict[str, Any]) -> None:
    import grpc
    from google.protobuf.any_pb2 import Any as PbAny
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    started = time.monotonic()
    timeout = p.get("call_timeout", 10.0)
    tcp = grpc.aio.insecure_channel(p["address"])
    unix = grpc.aio.insecure_channel(f"unix:{p['unix']}")
    await asyncio.wait_for(asyncio.gather(tcp.channel_ready(), unix.channel_ready()), 15)
    publish = BroadcasterStub(tcp).Publish
    check_tcp = health_pb2_grpc.HealthStub(tcp).Check
    check_unix = health_pb2_grpc.HealthStub(unix).Check
    hreq = health_pb2.HealthCheckRequest()
    preq = pb.PublishRequest(namespace=p.get("namespace", "probe"), topic="/probe",
                             payload=PbAny(type_url="bench/probe", value=b"x" * 64))

    async def new_conn() -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(p["address"], options=options) as ch:
            await health_pb2_grpc.HealthStub(ch).Check(hreq, timeout=timeout,
                                                       wait_for_ready=False)

    calls = {
        "publish": lambda: publish(preq, timeout=timeout),
        "health_tcp": lambda: check_tcp(hreq, timeout=timeout),
        "health_unix": lambda: check_unix(hreq, timeout=timeout),
        "health_new_conn": new_conn,
    }
    phase = 0
    samples: dict[str, dict[int, list[float]]] = {name: {} for name in calls}
    failures: dict[str, dict[int, dict[str, int]]] = {name: {} for name in calls}
    stop = asyncio.Event()
    inflight: dict[str, tuple[int, float]] = {}

    async def loop(name: str) -> None:
        while not stop.is_set():
            k, t0 = phase, time.monotonic()
            inflight[name] = (k, t0)
            try:
                await calls[name]()
            except grpc.aio.AioRpcError as exc:
                fails = failures[name].setdefault(k, {})
                fails[exc.code().name] = fails.get(exc.code().name, 0) + 1
            except Exception as exc:  # a channel that cannot even start a call
                fails = failures[name].setdefault(k, {})
                key = type(exc).__name__
                fails[key] = fails.get(key, 0) + 1
            del inflight[name]
            elapsed = time.monotonic() - t0
            samples[name].setdefault(k, []).append(elapsed * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, INTERVALS[name] - elapsed))

    emit(ready=True)
    loops = [asyncio.create_task(loop(name)) for name in calls]
    loop_ = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop_.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (left := p["deadline"] - 2 - (time.monotonic() - started)) > 0:
        try:
            line = (await asyncio.wait_for(reader.readline(), left)).strip()
        except TimeoutError:
            break
        if line.startswith(b"phase "):
            phase = int(line.split()[1])
            continue
        break  # stop, or end of input
    stop.set()
    # a call stuck on a frozen server is abandoned (and counted as its time so far)
    _, pending = await asyncio.wait(loops, timeout=1.0)
    for t in pending:
        t.cancel()
    for name, (k, t0) in inflight.items():  # still waiting: count it, as unfinished
        samples[name].setdefault(k, []).append((time.monotonic() - t0) * 1000)
        fails = failures[name].setdefault(k, {})
        fails["UNFINISHED"] = fails.get("UNFINISHED", 0) + 1
    await asyncio.gather(tcp.close(), unix.close(), return_exceptions=True)
    result: dict[str, Any] = {}
    for name in calls:
        result[name] = {
            str(k): {**percentiles(v, (50, 99)), "calls": len(v),
                     "failures": failures[name].get(k, {})}
            for k, v in samples[name].items()}
    emit(result=result, cpu_s=time.process_time())


def main() -> int:
    return run_worker(run)


if __name__ == "__main__":
    sys.exit(main())

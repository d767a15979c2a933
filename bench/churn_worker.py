"""One churn client process of scenario 6 over gRPC (``grpc_churn``):

``python -m bench.churn_worker '{"address": ..., "cycles": N, "kill_at": K|null, ...}'``

Does subscribe/unsubscribe cycles against the server, rotating through four kinds:

0. Add then Remove on a long-lived stream;
1. Add, publish one event (unary Publish), receive it, Remove, on the long-lived stream;
2. a new stream: Add, then cancel the call (the client aborts; RST_STREAM);
3. a new stream: Add, Remove, half-close; the server ends the stream.

Without ``kill_at`` it prints ``{"status": "done", ...}`` after *cycles* cycles. With it,
after *kill_at* cycles it opens ``hold`` more subscriptions on two fresh streams, publishes
a few events so they have deliveries in flight, prints ``{"status": "holding", ...}`` and
waits for the harness to SIGKILL it (it exits by itself at ``deadline``). Every loop is
bounded by its count and by ``deadline`` (seconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from bench._util import emit, payload, run_worker

KINDS = ("remove", "event", "cancel", "half_close")


async def run(p: dict[str, Any]) -> None:
    import grpc
    from google.protobuf.any_pb2 import Any as PbAny

    from bench._grpc_stream import SubscribeStream
    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    ns = p.get("namespace", "churn")
    name = f"w{p['index']}"
    end = time.monotonic() + p["deadline"]
    cycles, kill_at = p["cycles"], p.get("kill_at")
    limit = cycles if kill_at is None else min(cycles, kill_at)
    counts = dict.fromkeys(KINDS, 0)
    async with grpc.aio.insecure_channel(p["address"]) as channel:
        stub = BroadcasterStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 10)

        async def publish() -> None:  # a failed Publish raises: the worker fails loudly
            await stub.Publish(pb.PublishRequest(
                namespace=ns, topic="/churn",
                payload=PbAny(type_url="bench/raw", value=payload())), timeout=10)

        home = SubscribeStream(stub, ns)
        done = 0
        while done < limit and time.monotonic() < end:
            kind = KINDS[(done + p["index"]) % len(KINDS)]
            sid = f"{name}-{done}"
            if kind == "remove":
                await home.add([sid])
                await home.remove(sid)
            elif kind == "event":
                seen = home.events
                await home.add([sid])
                await publish()
                await home.wait_event(seen)
                await home.remove(sid)
            else:
                stream = SubscribeStream(stub, ns)
                await stream.add([sid])
                if kind == "cancel":
                    await stream.cancel()
                else:
                    await stream.remove(sid)
                    await stream.half_close()
            counts[kind] += 1
            done += 1
        if kill_at is not None and done == kill_at:
            hold = p.get("hold", 20)
            streams = [SubscribeStream(stub, ns) for _ in range(2)]
            for i, stream in enumerate(streams):
                await stream.add([f"{name}-hold{i}-{j}" for j in range(hold // 2 + i * (hold % 2))])
            for _ in range(5):
                await publish()
            emit(status="holding", done=done, held=hold, counts=counts)
            await asyncio.sleep(max(0.0, end - time.monotonic()))  # SIGKILLed before this
            return
        await home.half_close()
    emit(status="done", done=done, counts=counts, cpu_s=time.process_time())


def main() -> int:
    return run_worker(run)


if __name__ == "__main__":
    sys.exit(main())

"""One client process of scenario 7 over gRPC (``grpc_idle``): holds idle subscriptions.

``python -m bench.idle_worker '{"address": ..., "streams": N, "per_stream": M, ...}'``

Opens *streams* ``Subscribe`` streams spread over ``ceil(streams / streams_per_channel)``
channels, each its own TCP connection (a local subchannel pool per channel), adds
*per_stream* subscriptions on each, prints ``{"ready": ...}``, then only answers
Heartbeats with Acks (one Ack per stream answers all its subscriptions) until it reads
``stop`` on stdin or nears ``deadline`` (seconds). Then it cancels every stream, closes
the channels and prints ``{"result": ...}`` (Heartbeats seen, subscriptions ended by the
server, CPU seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from typing import Any

from bench._util import emit, run_worker


async def _stop_line(deadline: float) -> None:
    """Return when stdin says ``stop`` (or closes), or after *deadline* s."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.readline(), deadline)


async def run(p: dict[str, Any]) -> None:
    import grpc

    from bench._grpc_stream import SubscribeStream
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    start = time.monotonic()
    n_streams, per_stream = p["streams"], p["per_stream"]
    per_channel = p.get("streams_per_channel", 50)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(p["address"], options=options)
                for _ in range(math.ceil(n_streams / per_channel))]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 10)
        stubs = [BroadcasterStub(c) for c in channels]
        streams = [SubscribeStream(stubs[i // per_channel], p.get("namespace", "idle"), 30.0)
                   for i in range(n_streams)]
        await asyncio.wait_for(asyncio.gather(*(
            s.add([f"w{p['index']}-{i}-{j}" for j in range(per_stream)])
            for i, s in enumerate(streams))), p["deadline"] / 2)
        emit(ready=True, subscriptions=n_streams * per_stream, streams=n_streams,
             channels=len(channels), seconds=round(time.monotonic() - start, 3))
        await _stop_line(max(0.0, p["deadline"] - (time.monotonic() - start) - 2))
        result = {
            "heartbeats": sum(s.heartbeats for s in streams),
            "ended": sum(s.ended for s in streams),
            "events": sum(s.events for s in streams),
            "cpu_s": time.process_time(),
        }
        for stream in streams:
            await stream.cancel()
    finally:
        for channel in channels:
            await channel.close()
    emit(result=result)


def main() -> int:
    return run_worker(run)


if __name__ == "__main__":
    sys.exit(main())

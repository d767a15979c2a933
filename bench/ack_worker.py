"""Publish acknowledgement round trips, one publish at a time: our server's unary
``Publish`` (with an event id, as the client sends it) or nats-py's ``js.publish`` to
JetStream (the peer), each timed from the call to its acknowledgement.

``python -m bench.ack_worker '{"system": "grpc"|"jetstream", "address": ..., "count": N}'``
prints ``{"result": {"ack_us": [...]}}``.
"""

from __future__ import annotations

import time
from typing import Any

from bench._util import emit, payload, run_worker


async def main(p: dict[str, Any]) -> None:
    count, warmup = p["count"], p.get("warmup", 50)
    samples: list[int] = []
    if p["system"] == "grpc":
        import grpc
        from google.protobuf.any_pb2 import Any as PbAny

        from broadcaster.v1 import broadcaster_pb2 as pb
        from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

        async with grpc.aio.insecure_channel(p["address"]) as channel:
            stub = BroadcasterStub(channel)
            for i in range(warmup + count):
                request = pb.PublishRequest(
                    namespace="acks", topic="/bench", event_id=f"ack-{i}",
                    payload=PbAny(type_url="bench/raw", value=payload()))
                started = time.perf_counter_ns()
                await stub.Publish(request, timeout=10)
                if i >= warmup:
                    samples.append((time.perf_counter_ns() - started) // 1000)
    else:
        import nats

        from bench.net_worker import _bench_stream

        nc = await nats.connect(p["address"].split(","), max_reconnect_attempts=0)
        js = nc.jetstream()
        await _bench_stream(js, p)
        for i in range(warmup + count):
            started = time.perf_counter_ns()
            await js.publish("bench", payload(), headers={"Nats-Msg-Id": f"ack-{i}"})
            if i >= warmup:
                samples.append((time.perf_counter_ns() - started) // 1000)
        await nc.close()
    emit(result={"ack_us": samples})


if __name__ == "__main__":
    raise SystemExit(run_worker(main))

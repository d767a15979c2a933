"""The floor: a grpc.aio program that speaks just enough ``broadcaster.v1`` for the
benchmark's clients and does nothing else (scenario ``grpc_floor``).

``python -m bench.floor_worker '{"port": P, "deadline": S}'``

``Subscribe`` answers each Add with an ok ``AddResult`` and ignores Acks; ``PublishStream``
encodes each event once, hands it to every open stream and answers the batch with its
sequences. Each stream is served by its own task, as in ``broadcaster serve``: an idle
stream writes an event at once and the events that arrive while a write is in flight go
out together in the next message. No hub, no retention, no policies, no heartbeats, no
checks, no metrics: what is left is what any grpc.aio server pays per stream message on
this machine (one process, one thread, uvloop when installed, as ``broadcaster serve``),
and the latency the same clients see through it. The gap between this and
``grpc_latency`` / ``grpc_fanout`` is the project's own cost; the gap between this and
the NATS peer is grpc.aio's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bench._util import emit

_SERVICE = "broadcaster.v1.Broadcaster"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


class _Stream:
    """One Subscribe stream: its subscription id, the events not yet written, a wake-up."""

    __slots__ = ("control", "pending", "sid", "wake")

    def __init__(self) -> None:
        self.sid = b""
        self.pending: list[bytes] = []  # serialized Event messages
        self.control: list[bytes] = []  # serialized SubscribeResponse messages
        self.wake = asyncio.Event()


async def run(p: dict[str, Any]) -> None:
    import grpc

    from broadcaster.v1 import broadcaster_pb2 as pb

    streams: set[_Stream] = set()
    sequence = 0

    def ident(data: bytes) -> bytes:
        return data

    async def subscribe(requests: Any, context: Any) -> None:
        stream = _Stream()

        async def read() -> None:
            async for request in requests:
                if request.WhichOneof("kind") == "add":
                    sid = request.add.subscription_id
                    stream.sid = sid.encode()
                    stream.control.append(pb.SubscribeResponse(add_result=pb.AddResult(
                        subscription_id=sid, ok=True)).SerializeToString())
                    streams.add(stream)
                    stream.wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                await stream.wake.wait()
                stream.wake.clear()
                while stream.control:
                    await context.write(stream.control.pop(0))
                if stream.pending:
                    events, stream.pending = stream.pending, []
                    delivery_head = _field(1, stream.sid)
                    batch = b"".join(_field(1, delivery_head + _field(2, e)) for e in events)
                    await context.write(_field(1, batch))  # SubscribeResponse.event_batch
        finally:
            streams.discard(stream)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def publish_stream(requests: Any, context: Any) -> None:
        nonlocal sequence
        async for request in requests:
            sequences = []
            for event in request.events:
                sequence += 1
                sequences.append(sequence)
                data = pb.Event(namespace=event.namespace, topic=event.topic,
                                payload=event.payload, sequence=sequence).SerializeToString()
                for stream in streams:
                    stream.pending.append(data)
                    stream.wake.set()
            await context.write(pb.PublishStreamResponse(
                batch_id=request.batch_id, sequences=sequences).SerializeToString())

    handler = grpc.method_handlers_generic_handler(_SERVICE, {
        "Subscribe": grpc.stream_stream_rpc_method_handler(
            subscribe, request_deserializer=pb.SubscribeRequest.FromString,
            response_serializer=ident),
        "PublishStream": grpc.stream_stream_rpc_method_handler(
            publish_stream, request_deserializer=pb.PublishStreamRequest.FromString,
            response_serializer=ident),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{p['port']}")
    await server.start()
    emit(ready=True)
    await server.wait_for_termination()


def main() -> int:
    import json
    import sys

    params = json.loads(sys.argv[1])
    with contextlib.suppress(ImportError):
        import uvloop  # as broadcaster serve does by default

        uvloop.install()
    with contextlib.suppress(asyncio.TimeoutError):
        asyncio.run(asyncio.wait_for(run(params), params["deadline"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

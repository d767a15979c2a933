"""Processes of the kubelet-like scenario (``bench/_kubelet.py``).

``python -m bench.kubelet_worker '{"role": "watch"|"shim", ...}'``

``watch``: one Subscribe stream per watcher, each with one subscription filtered
``topic=="/tasks/exit",event.container_id==<its id>`` (or ``topic=="/tasks/exit"`` alone
with ``"plain": true``); prints ``{"ready"}`` once every subscription is live, waits for
``go``, and prints ``{"result"}`` when every watcher has its expected exits (or after
``idle_timeout`` s without progress, or at the deadline). Every delivered event is
decoded and checked: an exit of another container counts as ``wrong``.

``shim``: waits for ``go``, then publishes create, start and exit (containerd's
TaskCreate, TaskStart and TaskExit) for each container, ``rounds`` times over, with
PublishStream (100 events per message, 8 in flight), and prints ``{"result"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from bench._util import emit, run_worker

NAMESPACE = "k8s.io"
BATCH = 100
WINDOW = 8


def container_id(i: int) -> str:
    return f"{i:064x}"  # the length of a real container id


class Watchers:
    """Deliveries per watcher, and exits of other containers seen."""

    def __init__(self, ids: list[str], expected: int) -> None:
        self.got = dict.fromkeys(ids, 0)
        self.expected = expected * len(ids)
        self.total = 0
        self.wrong = 0
        self.dropped = 0
        self.done = asyncio.Event()
        self.last_progress = time.monotonic()
        self.last_ns = 0

    def add(self, sid: str, n: int) -> None:
        self.got[sid] += n
        self.total += n
        self.last_progress = time.monotonic()
        self.last_ns = time.time_ns()
        if self.total + self.dropped >= self.expected:
            self.done.set()


async def _wait_go(p: dict[str, Any], tally: Watchers | None = None) -> None:
    """Wait for the harness's ``go`` line on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = await asyncio.wait_for(reader.readline(), p["deadline"])
    if line.strip() != b"go":
        raise SystemExit("expected 'go'")
    p["go_received"] = True
    if tally is not None:
        tally.last_progress = time.monotonic()


async def _finish(tally: Watchers, p: dict[str, Any]) -> None:
    """Return when all expected deliveries came, or nothing came for idle_timeout s."""
    end = time.monotonic() + p["deadline"]
    idle = p.get("idle_timeout", 5.0)
    while not tally.done.is_set() and time.monotonic() < end:
        if p.get("go_received") and time.monotonic() - tally.last_progress > idle:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done.wait(), 0.2)


async def watch(p: dict[str, Any]) -> None:
    import grpc

    from broadcaster.containerd.events import task_pb2
    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    ids = [container_id(i) for i in p["containers"]]
    plain = p.get("plain", False)
    tally = Watchers(ids, p["expected"])
    policy = pb.OverflowPolicy(kind=pb.OverflowPolicy.DROP_NEWEST, max_events=p["max_events"])
    ready = 0
    all_ready = asyncio.Event()

    async def one(channel: grpc.aio.Channel, cid: str) -> None:
        nonlocal ready
        queue: asyncio.Queue[Any] = asyncio.Queue()
        flt = 'topic=="/tasks/exit"' + ("" if plain else f",event.container_id=={cid}")
        queue.put_nowait(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
            subscription_id=cid, namespaces=[NAMESPACE], filters=[flt], policy=policy)))

        async def requests() -> Any:
            while True:
                yield await queue.get()

        async for msg in BroadcasterStub(channel).Subscribe(requests()):
            kind = msg.WhichOneof("kind")
            if kind == "event_batch":
                for d in msg.event_batch.deliveries:
                    if not plain and task_pb2.TaskExit.FromString(
                            d.event.payload.value).container_id != cid:
                        tally.wrong += 1
                    tally.add(cid, len(d.subscription_ids))
            elif kind == "heartbeat":
                queue.put_nowait(pb.SubscribeRequest(
                    ack=pb.SubscribeRequest.Ack(heartbeat_id=msg.heartbeat.heartbeat_id)))
            elif kind == "drop_notice":
                tally.dropped += msg.drop_notice.count
            elif kind == "add_result":
                if not msg.add_result.ok:
                    raise SystemExit(f"add failed: {msg.add_result.error.message}")
                ready += 1
                if ready == len(ids):
                    all_ready.set()

    # one connection per 50 streams: the server allows 100 streams per connection
    channels = [grpc.aio.insecure_channel(p["address"], options=[
        ("grpc.use_local_subchannel_pool", 1)]) for _ in range((len(ids) + 49) // 50)]
    tasks = [asyncio.create_task(one(channels[i // 50], cid)) for i, cid in enumerate(ids)]
    await asyncio.wait_for(all_ready.wait(), p["deadline"])
    emit(ready=True)
    await _wait_go(p, tally)
    await _finish(tally, p)
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close()
    emit(result={"cpu_s": time.process_time(), "received": tally.total,
                 "per_watcher": sorted(set(tally.got.values())), "wrong": tally.wrong,
                 "dropped": tally.dropped, "last_ns": tally.last_ns})


async def shim(p: dict[str, Any]) -> None:
    import grpc
    from google.protobuf.any_pb2 import Any as PbAny

    from broadcaster.containerd.events import task_pb2
    from broadcaster.v1 import broadcaster_pb2 as pb
    from broadcaster.v1.broadcaster_pb2_grpc import BroadcasterStub

    def lifecycle(i: int) -> list[Any]:
        cid = container_id(i)
        events = [("/tasks/create", task_pb2.TaskCreate(container_id=cid, bundle=f"/run/{cid}",
                                                        pid=1000 + i)),
                  ("/tasks/start", task_pb2.TaskStart(container_id=cid, pid=1000 + i)),
                  ("/tasks/exit", task_pb2.TaskExit(container_id=cid, id=cid, pid=1000 + i,
                                                    exit_status=0))]
        return [pb.PublishRequest(namespace=NAMESPACE, topic=topic, payload=PbAny(
            type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString()))
            for topic, msg in events]

    stream = [req for _ in range(p["rounds"]) for i in range(p["containers"])
              for req in lifecycle(i)]
    async with grpc.aio.insecure_channel(p["address"]) as channel:
        await channel.channel_ready()
        emit(ready=True)
        await _wait_go(p)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        credits = asyncio.Semaphore(WINDOW)
        errors = 0

        async def requests() -> Any:
            while (item := await queue.get()) is not None:
                yield item

        call = BroadcasterStub(channel).PublishStream(requests())

        async def answers() -> None:
            nonlocal errors
            async for resp in call:
                errors += resp.HasField("error")
                credits.release()

        reader = asyncio.create_task(answers())
        start_ns = time.time_ns()
        for bid, first in enumerate(range(0, len(stream), BATCH), 1):
            await credits.acquire()
            queue.put_nowait(pb.PublishStreamRequest(
                batch_id=bid, events=stream[first:first + BATCH]))
        for _ in range(WINDOW):
            await asyncio.wait_for(credits.acquire(), p["deadline"])
        end_ns = time.time_ns()
        queue.put_nowait(None)
        reader.cancel()
    emit(result={"cpu_s": time.process_time(), "published": len(stream), "errors": errors,
                 "start_ns": start_ns, "end_ns": end_ns})


def main() -> int:
    return run_worker(lambda p: {"watch": watch, "shim": shim}[p["role"]](p))


if __name__ == "__main__":
    sys.exit(main())

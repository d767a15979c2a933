"""Raw costs of the durable log engines on this machine (not a benchmark of the hub):
local (SQLite) appends per event and per batch under each fsync mode, and JetStream
publish round trips on one node and on a 3-node cluster (R3).

    .venv/bin/python scripts/measure_logs.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broadcaster import Retention
from broadcaster._core._sqlite_store import LocalConfig, SqliteStore
from broadcaster._jetstream import JetStreamConfig, JetStreamStore
from tests._nats import NatsCluster, NatsNode
from tests.logs._util import Recorder, item

N = 2000
BATCH = 100


def pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6


async def local(mode: str) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        async with SqliteStore(LocalConfig(tmp, fsync=mode, fsync_interval=0.05)) as store:  # type: ignore[arg-type]
            log = await store.open_log("default", Retention(), Recorder())
            samples = []
            for i in range(N):
                t = time.perf_counter()
                await log.append([item(i, size=200)], anyio.current_time())
                samples.append(time.perf_counter() - t)
            t = time.perf_counter()
            for i in range(N // BATCH):
                await log.append([item(i, size=200) for _ in range(BATCH)], anyio.current_time())
            per_batch = (time.perf_counter() - t) / (N // BATCH)
            commits0 = store.commits
            t = time.perf_counter()
            async with anyio.create_task_group() as tg:  # 32 concurrent publishers
                async def pub() -> None:
                    for i in range(N // 32):
                        await log.append([item(i, size=200)], anyio.current_time())
                for _ in range(32):
                    tg.start_soon(pub)
            conc = time.perf_counter() - t
        print(f"local fsync={mode:8s} single append p50 {pct(samples, .5):7.0f} us "
              f"p99 {pct(samples, .99):7.0f} us | batch of {BATCH}: {per_batch * 1e6:7.0f} us "
              f"({per_batch / BATCH * 1e6:5.1f} us/event) | 32 concurrent publishers: "
              f"{(N // 32 * 32) / conc:7.0f} events/s in {store.commits - commits0} commits")


async def jetstream(urls: list[str], replicas: int, label: str) -> None:
    config = JetStreamConfig(urls, replicas=replicas)
    async with JetStreamStore(config) as store:
        log = await store.open_log("measure", Retention(), Recorder())
        raw, ours = [], []
        for i in range(N):
            t = time.perf_counter()
            await store.js.publish(log._subject, b"x" * 200)
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            await log.append([item(i, size=200, event_id=f"id-{i}")], anyio.current_time())
            ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(N // BATCH):
            await log.append([item(i, size=200) for _ in range(BATCH)], anyio.current_time())
        per_batch = (time.perf_counter() - t) / (N // BATCH)
    print(f"jetstream {label}: js.publish p50 {pct(raw, .5):5.0f} us p99 {pct(raw, .99):6.0f} us"
          f" | log.append p50 {pct(ours, .5):5.0f} us p99 {pct(ours, .99):6.0f} us | batch of "
          f"{BATCH}: {per_batch * 1e6:6.0f} us ({per_batch / BATCH * 1e6:5.1f} us/event)")


def main() -> None:
    for mode in ("always", "batch", "interval"):
        anyio.run(local, mode)
    with tempfile.TemporaryDirectory() as tmp:
        node = NatsNode("n1", Path(tmp))
        node.start()
        try:
            node.wait_ready()
            anyio.run(jetstream, [node.url], 1, "1 node, R1 ")
        finally:
            node.stop()
        cluster = NatsCluster(Path(tmp) / "cluster")
        try:
            cluster.start()
            anyio.run(jetstream, cluster.urls, 3, "3 nodes, R3")
        finally:
            cluster.stop()
    _ = statistics


if __name__ == "__main__":
    main()

"""In-process scenarios of the core hub alone, one per process:
``python -m bench.core_worker '{"scenario": "fanout", ...}'`` prints ``{"result": {...}}``.

Every loop is bounded by a count and by the ``deadline`` parameter (seconds).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

import anyio
import anyio.lowlevel

from bench._proc import cpu_seconds, rss_bytes
from bench._util import emit, payload, percentiles
from broadcaster import (
    DEFAULT_GC_THRESHOLD,
    Broadcaster,
    HubConfig,
    NamespaceConfig,
    Policy,
    PublishItem,
    Retention,
    tune_gc,
)
from broadcaster._core._types import Event

BATCH = 100


def _hub(max_subs: int = 20_000, retention: int = 200_000, **extra: Any) -> Broadcaster:
    ns = NamespaceConfig(
        retention=Retention(max_events=retention), max_subscriptions=max_subs,
        default_policy=Policy.drop_oldest(1024),
    )
    return Broadcaster(HubConfig(default_namespace=ns, **extra))


def _items(n: int) -> list[PublishItem]:
    body = payload()
    return [PublishItem("/bench", body) for _ in range(n)]


async def _reader(sub: Any, want: int, box: dict[str, int], lat: list[float] | None) -> None:
    got = 0
    while got < want:
        items = await sub.receive_batch(4096)
        now = anyio.current_time()
        for item in items:
            if isinstance(item, Event):
                got += 1
                if lat is not None:
                    lat.append(now - item.published_at)
            elif hasattr(item, "count"):
                box["dropped"] += item.count
                got += item.count
    box["received"] += got


async def fanout(p: dict[str, Any]) -> dict[str, Any]:
    """1 publisher, S subscribers, lossless (block policy): deliveries per second."""
    subs, events = p["subscribers"], p["events"]
    box = {"received": 0, "dropped": 0}
    async with _hub() as hub, anyio.create_task_group() as tg:
        opened = []
        for _ in range(subs):
            sub = hub.subscribe("bench", policy=Policy.block(8192, timeout=5.0))
            await sub.__aenter__()
            opened.append(sub)
        for sub in opened:
            tg.start_soon(_reader, sub, events, box, None)
        await anyio.lowlevel.checkpoint()
        items = _items(BATCH)
        start = time.perf_counter()
        with anyio.fail_after(p["deadline"]):
            for _ in range(events // BATCH):
                await hub.publish_many("bench", items)
            while box["received"] < events * subs:
                await anyio.sleep(0.001)
        elapsed = time.perf_counter() - start
        for sub in opened:
            await sub.__aexit__(None, None, None)
    return {
        "deliveries_per_s": events * subs / elapsed, "elapsed_s": elapsed,
        "delivered": box["received"] - box["dropped"], "lost": box["dropped"],
        "expected": events * subs,
    }


async def publish_cost(p: dict[str, Any]) -> dict[str, Any]:
    """Publish rate with S healthy subscribers that keep reading (drop_oldest).

    Two figures: the wall-clock rate (publisher and readers share one thread, so this
    mostly measures the readers) and the publisher's own rate, time spent inside
    ``publish_many`` only (the hub is told not to yield inside it; the publisher yields
    outside the timed region)."""
    subs, seconds = p["subscribers"], p["seconds"]
    box = {"received": 0, "dropped": 0}
    published = 0
    inside = 0.0
    async with _hub(publish_yield_every=10**9) as hub, anyio.create_task_group() as tg:
        opened = []
        for _ in range(subs):
            sub = hub.subscribe("bench", policy=Policy.drop_oldest(65536))
            await sub.__aenter__()
            opened.append(sub)
            tg.start_soon(_reader, sub, 10**12, box, None)
        items = _items(BATCH)
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await hub.publish_many("bench", items)
            inside += time.perf_counter() - t0
            published += BATCH
            await anyio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    for sub in opened:  # after the readers are gone: a closed subscription is an error
        sub.close()     # to a reader still in receive_batch
    return {
        "publish_per_s": published / inside, "wall_publish_per_s": published / elapsed,
        "publish_us_per_event": 1e6 * inside / published, "published": published,
        "deliveries_per_s": published * subs / elapsed,
    }


async def _paced(hub: Broadcaster, ns: str, rate: float, seconds: float) -> int:
    """Publish *rate* events/s for *seconds* in 1 ms ticks; returns events published."""
    start = anyio.current_time()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((anyio.current_time() - start) * rate) + 1)
        if due > sent:
            await hub.publish_many(ns, _items(due - sent))
            sent = due
        await anyio.sleep(0.001)
    return sent


async def latency(p: dict[str, Any]) -> dict[str, Any]:
    """S subscribers at a paced rate, plus optionally one stalled subscriber and/or a
    flood in another namespace; reports healthy subscribers' latency percentiles (ms)."""
    subs, rate, seconds = p["subscribers"], p["rate"], p["seconds"]
    total = int(rate * seconds)
    lat: list[float] = []
    box = {"received": 0, "dropped": 0}
    flood_count = 0
    stalled_stats: dict[str, Any] = {}
    async with _hub() as hub, anyio.create_task_group() as tg:
        opened = []
        for _ in range(subs):
            sub = hub.subscribe("b", policy=Policy.drop_newest(65536))
            await sub.__aenter__()
            opened.append(sub)
            tg.start_soon(_reader, sub, total, box, lat)
        stalled = None
        if p.get("stalled"):
            stalled = hub.subscribe("b", policy=Policy.drop_newest(1000))
            await stalled.__aenter__()
        flooding = True

        async def flood() -> None:
            nonlocal flood_count
            items = _items(BATCH)
            while flooding:
                await hub.publish_many("a", items)
                flood_count += BATCH

        if p.get("flood"):
            flood_sub = hub.subscribe("a", policy=Policy.drop_oldest(1024))
            await flood_sub.__aenter__()
            tg.start_soon(_reader, flood_sub, 10**12, {"received": 0, "dropped": 0}, None)
            tg.start_soon(flood)
        with anyio.fail_after(p["deadline"]):
            await _paced(hub, "b", rate, seconds)
            while box["received"] < total * subs:
                await anyio.sleep(0.01)
        flooding = False
        if stalled is not None:
            st = hub.statistics().namespaces["b"]
            stalled_stats = {"dropped_for_stalled": dict(st.dropped)}
            stalled.close()
        tg.cancel_scope.cancel()
    ms = [x * 1000 for x in lat]
    return {
        "latency_ms": percentiles(ms), "deliveries": len(ms), "lost": box["dropped"],
        "flood_events": flood_count, **stalled_stats,
    }


def _settle() -> int:
    gc.collect()
    return rss_bytes(os.getpid())


async def churn(p: dict[str, Any]) -> dict[str, Any]:
    """N subscribe/cancel cycles (some cancelled mid-receive): subscriptions and RSS
    back to baseline."""
    cycles = p["cycles"]
    async with _hub(retention=100) as hub:  # retained events are not a leak: bound them
        await hub.publish("bench", "/bench", payload())
        for _ in range(200):  # warm caches before the baseline
            async with hub.subscribe("bench"):
                pass
        base = _settle()
        with anyio.fail_after(p["deadline"]):
            for i in range(cycles):
                with anyio.CancelScope() as scope:
                    async with hub.subscribe("bench") as sub:
                        if i % 10 == 0:
                            scope.cancel()  # abrupt: cancelled while waiting for events
                            await sub.receive_batch()
                        else:
                            await hub.publish("bench", "/bench", payload())
                            await sub.receive_batch()
        after = _settle()
        left = hub.subscription_count
    return {
        "cycles": cycles, "subscriptions_left": left, "rss_base": base, "rss_after": after,
        "rss_growth_pct": 100.0 * (after - base) / base,
    }


async def idle(p: dict[str, Any]) -> dict[str, Any]:
    """N idle subscriptions: RSS per subscription and heartbeat CPU."""
    n, hb = p["subscriptions"], p.get("heartbeat_interval", 0.5)
    config = HubConfig(
        heartbeat_interval=hb,
        default_namespace=NamespaceConfig(max_subscriptions=n + 10),
    )
    async with Broadcaster(config) as hub, anyio.create_task_group() as tg:
        await hub.publish("bench", "/bench", payload())
        base = _settle()

        async def hold(ready: anyio.Event, stop: anyio.Event) -> None:
            async with hub.subscribe("bench", liveness="ack") as sub:
                ready.set()
                while not stop.is_set():
                    for item in await sub.receive_batch():
                        if hasattr(item, "heartbeat_id"):
                            sub.ack(item.heartbeat_id)

        stop = anyio.Event()
        with anyio.fail_after(p["deadline"]):
            for _ in range(n):
                ready = anyio.Event()
                tg.start_soon(hold, ready, stop)
                await ready.wait()
            held = _settle()
            cpu0 = cpu_seconds(os.getpid())
            await anyio.sleep(p.get("idle_seconds", 2.0))
            cpu1 = cpu_seconds(os.getpid())
        count = hub.subscription_count
        tg.cancel_scope.cancel()
    seconds = p.get("idle_seconds", 2.0)
    return {
        "subscriptions": count, "rss_base": base, "rss_held": held,
        "bytes_per_subscription": (held - base) / n,
        "heartbeat_cpu_s_per_s": (cpu1 - cpu0) / seconds, "heartbeat_interval_s": hb,
        "note": "each subscription is held by its own task, as a gRPC edge would",
    }


SCENARIOS = {
    "fanout": fanout, "publish_cost": publish_cost, "latency": latency,
    "churn": churn, "idle": idle,
}


def main() -> int:
    params = json.loads(sys.argv[1])
    tune_gc(params.get("gc_threshold", DEFAULT_GC_THRESHOLD))  # as `broadcaster serve` does
    backend = params.get("backend", "asyncio")
    result = anyio.run(SCENARIOS[params["scenario"]], params, backend=backend)
    emit(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

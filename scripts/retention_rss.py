"""Measure the resident memory of a hub whose retained events fill max_retained_bytes.

    .venv/bin/python scripts/retention_rss.py [--budget-mib 512] [--payload mixed|64k]
        [--namespaces 64] [--no-encode]

Publishes into many namespaces until twice the budget went through, while an
all-namespaces subscriber reads everything and caches its serialization the way the
gRPC server does (``EventEncoder(on_cache=hub.account_cached)``), then prints RSS
before and after, next to the retained bytes the hub counts. Linux only (reads
/proc/self/status).
"""

from __future__ import annotations

import argparse
import gc
import random

import anyio

from broadcaster import Broadcaster, Event, HubConfig, NamespaceConfig, PublishItem, Retention
from broadcaster.grpc._encode import EventEncoder

MIB = 1024 * 1024


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main(budget: int, payload: str, namespaces: int, encode: bool) -> None:
    rng = random.Random(1)
    sizes = (0, 40, 300, 2000) if payload == "mixed" else (65536,)
    unbounded = NamespaceConfig(retention=Retention(max_events=10**9, max_bytes=10**12,
                                                    max_age=10**9))
    config = HubConfig(max_retained_bytes=budget, default_namespace=unbounded)
    async with Broadcaster(config) as hub, hub.subscribe(None) as reader:
        encoder = EventEncoder(on_cache=hub.account_cached)
        gc.collect()
        start = rss_mib()
        published = 0
        while published < 2 * budget:
            for ns in range(namespaces):
                items = [PublishItem("/tasks/exit", bytes(rng.choice(sizes)),
                                     "containerd.events.TaskExit",
                                     {"pod": f"p{rng.randrange(10**6)}"} if i % 3 else {})
                         for i in range(16)]
                await hub.publish_many(f"ns{ns}", items)
                published += sum(len(item.payload) + 300 for item in items)
            for item in reader.receive_batch_nowait(10**6):
                if encode and isinstance(item, Event):
                    encoder.field(item)
        gc.collect()
        stats = hub.statistics()
        grown = rss_mib() - start
        print(f"budget {budget / MIB:.0f} MiB, payloads {payload}, {namespaces} namespaces, "
              f"{'with' if encode else 'without'} the edge's encoded copies")
        print(f"  retained: {sum(n.retained_events for n in stats.namespaces.values())} "
              f"events, {stats.retained_bytes / MIB:.1f} MiB counted; "
              f"{stats.budget_trimmed_events} trimmed by the budget")
        print(f"  RSS: {start:.0f} MiB at start, +{grown:.0f} MiB full "
              f"({grown * MIB / stats.retained_bytes:.2f} x the counted bytes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=512)
    parser.add_argument("--payload", choices=("mixed", "64k"), default="mixed")
    parser.add_argument("--namespaces", type=int, default=64)
    parser.add_argument("--no-encode", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.budget_mib * MIB, args.payload, args.namespaces, not args.no_encode)

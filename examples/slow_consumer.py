"""A slow consumer: drops are counted, reported in-band, and visible in /metrics.

It subscribes with a small ``drop_newest`` bound, stops reading while it publishes
--events events, then reads again: the subscription yields a DropNotice with the exact
sequence range it lost. Finally it prints the ``broadcaster_events_dropped_total``
lines of the server's Prometheus endpoint (``broadcaster serve --metrics-listen``).

    python examples/slow_consumer.py --address 127.0.0.1:50051 \\
        --metrics-url http://127.0.0.1:9090/metrics
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.request

from broadcaster import Policy
from broadcaster.client import Client, DropNotice, Event


async def demo(address: str, namespace: str, events: int, bound: int) -> None:
    payload = b"x" * 4096
    async with Client(address, buffer=1) as client:
        sub = client.subscribe(namespace, policy=Policy.drop_newest(bound))
        async with sub:
            # Not reading now: the stream fills up and the server applies the policy.
            async with client.publisher(namespace) as pub:
                for _ in range(events):
                    await pub.submit("/demo/tick", payload)
            marker = await client.publish(namespace, "/demo/done", b"")
            received = 0
            async for item in sub:
                if isinstance(item, DropNotice):
                    print(f"DropNotice: {item.count} events of {item.namespace} lost, "
                          f"sequences {item.first_sequence}..{item.last_sequence} "
                          f"({item.reason})")
                elif isinstance(item, Event):
                    received += 1
                    if item.sequence >= marker:
                        break
            print(f"received {received} of {events + 1} events")


def show_metrics(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("broadcaster_events_dropped_total"):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--namespace", default="slow-demo")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--bound", type=int, default=10, help="drop_newest max_events")
    parser.add_argument("--metrics-url", help="the server's /metrics URL")
    args = parser.parse_args()
    asyncio.run(demo(args.address, args.namespace, args.events, args.bound))
    if args.metrics_url:
        show_metrics(args.metrics_url)


if __name__ == "__main__":
    main()

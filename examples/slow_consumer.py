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
from typing import Any

from broadcaster import Policy
from broadcaster.client import Client, ClientTLS, DropNotice, Event, read_token


async def demo(address: str, namespace: str, events: int, bound: int, **connect: Any) -> None:
    payload = b"x" * 4096
    async with Client(address, buffer=1, **connect) as client:
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


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """TLS and token settings of the Client, from the command line (docs/security.md)."""
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = ClientTLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    return {"tls": tls, "token": read_token(args.token_file) if args.token_file else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--tls-ca", help="CA certificates (PEM) to verify the server with")
    parser.add_argument("--tls-cert", help="client certificate (PEM), for mTLS")
    parser.add_argument("--tls-key", help="its private key (PEM)")
    parser.add_argument("--token-file", help="file holding a bearer token")
    parser.add_argument("--namespace", default="slow-demo")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--bound", type=int, default=10, help="drop_newest max_events")
    parser.add_argument("--metrics-url", help="the server's /metrics URL")
    args = parser.parse_args()
    asyncio.run(demo(args.address, args.namespace, args.events, args.bound,
                     **connection(args)))
    if args.metrics_url:
        show_metrics(args.metrics_url)


if __name__ == "__main__":
    main()

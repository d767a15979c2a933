"""A shim-like publisher: the create/start/exit lifecycle of many containers, batched.

Each container gets three events, as containerd shims publish them (bare type URLs):

    /tasks/create  containerd.events.TaskCreate
    /tasks/start   containerd.events.TaskStart
    /tasks/exit    containerd.events.TaskExit

Run a server (``broadcaster serve``), then::

    python examples/shim_publisher.py --address 127.0.0.1:50051 --containers 1000

It prints the sequence range it was given and the rate. Containers are published in
waves of --wave (all creates, then all starts, then all exits of a wave), the way a
node starts and stops many pods at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from google.protobuf import timestamp_pb2

from broadcaster.client import Client, ClientTLS, read_token
from broadcaster.containerd.events import task_pb2


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


async def publish_lifecycles(
    address: str, namespace: str, containers: int, wave: int, prefix: str, max_batch: int,
    **connect: Any,
) -> tuple[int, int]:
    """Publish create/start/exit of *containers*; returns (first, last) sequence."""
    futures = []
    async with Client(address, **connect) as client, client.publisher(
        namespace, max_batch=max_batch
    ) as pub:
        for start in range(0, containers, wave):
            ids = [f"{prefix}{i}" for i in range(start, min(start + wave, containers))]
            for n, cid in enumerate(ids, start):
                futures.append(await pub.submit("/tasks/create", task_pb2.TaskCreate(
                    container_id=cid, bundle=f"/run/containerd/{cid}", pid=10_000 + n)))
            for n, cid in enumerate(ids, start):
                futures.append(await pub.submit(
                    "/tasks/start", task_pb2.TaskStart(container_id=cid, pid=10_000 + n)))
            for n, cid in enumerate(ids, start):
                futures.append(await pub.submit("/tasks/exit", task_pb2.TaskExit(
                    container_id=cid, id=cid, pid=10_000 + n, exit_status=n % 3,
                    exited_at=_now())))
        await pub.flush()
    sequences = [f.result() for f in futures]
    return sequences[0], sequences[-1]


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
    parser.add_argument("--namespace", default="k8s.io")
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=100, help="containers per wave")
    parser.add_argument("--prefix", default="c-", help="container id prefix")
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    first, last = asyncio.run(publish_lifecycles(
        args.address, args.namespace, args.containers, args.wave, args.prefix, args.max_batch,
        **connection(args)))
    elapsed = time.perf_counter() - started
    events = 3 * args.containers
    print(f"published {events} events, sequences {first}..{last} of {args.namespace}, "
          f"{events / elapsed:,.0f} events/s")


if __name__ == "__main__":
    main()

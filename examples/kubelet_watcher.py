"""A kubelet-like watcher of task exits that survives its own restarts.

It subscribes to ``topic=="/tasks/exit"`` of one namespace and prints one line per exit:

    EXIT <container_id> status=<exit_status> seq=<sequence>

After handling each batch it saves the last sequence and the server's epoch to
--state (written atomically). Restarted, it resumes with ``since`` + ``epoch`` from
that file, so exits published while it was down are reported then.

Guarantee: every exit is reported at least once, with no gap. An exit may be reported
twice if the watcher is killed after printing it and before saving the state.

When the server cannot honour the cursor (it restarted with an empty log: new epoch,
or the events expired) the watcher gets a ResyncNotice: it prints
``RESYNC <reason>`` and re-lists (here: prints ``RELIST``), as a kubelet would ask the
runtime for the state of every container. Drops are printed as ``DROPPED a..b``
(the default policy for this watcher is drop_oldest with a large bound).

    python examples/kubelet_watcher.py --address 127.0.0.1:50051 --state /tmp/watch.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from broadcaster import Policy
from broadcaster.client import Client, ClientTLS, DropNotice, Ended, Event, ResyncNotice, read_token
from broadcaster.containerd.events import task_pb2


def load_state(path: Path) -> tuple[int | None, str | None]:
    """(last sequence, epoch) from the state file, or (None, None) on a first start."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    return int(data["sequence"]), data.get("epoch") or None


def save_state(path: Path, sequence: int, epoch: str | None) -> None:
    """Write the state atomically (a crash leaves the old or the new file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"sequence": sequence, "epoch": epoch}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def watch(address: str, namespace: str, state: Path, count: int | None,
                **connect: Any) -> int:
    sequence, epoch = load_state(state)
    reported = 0
    async with Client(address.split(","), **connect) as client:  # several: the nodes of a cluster
        if epoch is None:  # the server's epoch, or (jetstream log) the namespace's own
            stats = await client.stats()
            epoch = stats.epoch or next(
                (ns.epoch for ns in stats.namespaces if ns.namespace == namespace), None)
        if sequence is None:
            say("RELIST startup")
        sub = client.subscribe(
            namespace, filters=['topic=="/tasks/exit"'], policy=Policy.drop_oldest(100_000),
            since=sequence, epoch=epoch,
        )
        async with sub:
            say(f"WATCHING {namespace} since={sequence} epoch={epoch}")
            last = sequence or 0
            async for batch in sub.batches():
                for item in batch:
                    if isinstance(item, Event):
                        exit_ = task_pb2.TaskExit.FromString(item.payload)
                        say(f"EXIT {exit_.container_id} status={exit_.exit_status} "
                            f"seq={item.sequence}")
                        last = item.sequence
                        reported += 1
                    elif isinstance(item, ResyncNotice):
                        say(f"RESYNC {item.reason} epoch={item.epoch}")
                        say("RELIST")
                        epoch, last = item.epoch, max(0, item.oldest_available - 1)
                    elif isinstance(item, DropNotice):
                        say(f"DROPPED {item.first_sequence}..{item.last_sequence}")
                        say("RELIST")
                        last = max(last, item.last_sequence)
                    elif isinstance(item, Ended):
                        say(f"ENDED {item.reason}")
                        return 1
                save_state(state, last, sub.epoch or epoch)
                if count is not None and reported >= count:
                    return 0
    return 1


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """TLS and token settings of the Client, from the command line (docs/security.md)."""
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = ClientTLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    return {"tls": tls, "token": read_token(args.token_file) if args.token_file else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051",
                        help="ADDR[,ADDR...]: several for the nodes of a jetstream cluster")
    parser.add_argument("--tls-ca", help="CA certificates (PEM) to verify the server with")
    parser.add_argument("--tls-cert", help="client certificate (PEM), for mTLS")
    parser.add_argument("--tls-key", help="its private key (PEM)")
    parser.add_argument("--token-file", help="file holding a bearer token")
    parser.add_argument("--namespace", default="k8s.io")
    parser.add_argument("--state", type=Path, default=Path("kubelet_watcher.state.json"))
    parser.add_argument("--count", type=int, help="exit after reporting N exits")
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(watch(args.address, args.namespace, args.state, args.count,
                                   **connection(args))))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()

"""``broadcaster subscribe``: print events as they arrive, like ``ctr events``.

Each event is one line ``<timestamp> <namespace> <topic> <json>`` as ctr prints it
(containerd event types are decoded; ``application/json`` payloads are printed as
they are; other payloads as ``{"type_url":...,"payload_base64":...}``). With
``--json``, every item is one JSON object with a ``kind`` of ``event``, ``drop``,
``resync`` or ``ended``. Drops and resyncs are always printed: as lines starting
with ``# DROPPED`` / ``# RESYNC`` / ``# ENDED``, or as JSON objects.

Exits 0 on SIGINT/SIGTERM or after ``--count`` events; 1 when the server ends the
subscription or rejects it (the message names the offending field).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
from typing import Any, TextIO

from .. import Policy
from .._core._errors import BroadcasterError
from .._typeurl import CONTAINERD_TYPES, decode_event, format_ctr_line, go_time_string
from ..client import (
    AvailabilityNotice,
    Client,
    ClientError,
    DropNotice,
    Ended,
    Event,
    Item,
    ResyncNotice,
)
from ._connect import client_options
from ._publish import JSON_TYPE_URL, add_address_argument

__all__ = ["add_parser", "run"]

_POLICIES = ("drop_newest", "drop_oldest", "block", "retry", "disconnect")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "subscribe", help="print events as they arrive (like ctr events)",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_address_argument(parser, several=True)
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="namespace to watch (repeatable; default: all namespaces)")
    parser.add_argument(
        "--filter", "-f", action="append", default=[], metavar="F",
        help='containerd filter (repeatable, OR-ed): selectors joined by "," (AND) on '
             "namespace, topic, type, labels.KEY and event.FIELD (payload fields of "
             'containerd event types and JSON), with ==, !=, ~= (RE2, Go syntax) or none '
             "(present); e.g. 'topic==\"/tasks/exit\",event.container_id==abc'")
    parser.add_argument("--since", type=int, metavar="N",
                        help="replay retained events after sequence N of each --namespace")
    parser.add_argument(
        "--epoch", action="append", default=[], metavar="E|NS=E",
        help="epoch the --since sequence belongs to: one for every namespace, or NS=E per "
        "namespace (repeatable; each namespace has its own with a jetstream log)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per item")
    parser.add_argument("--policy", choices=_POLICIES,
                        help="overflow policy when this subscriber is slow (default: server's)")
    parser.add_argument("--max-events", type=int, default=1024, metavar="N",
                        help="with --policy: queue bound in events (default: %(default)s)")
    parser.add_argument("--max-bytes", type=int, default=0, metavar="N",
                        help="with --policy: queue bound in bytes, 0 = none")
    parser.add_argument("--block-timeout", type=float, default=1.0, metavar="S",
                        help="with --policy block: seconds a publisher waits")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N events")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the subscription to be accepted")
    parser.set_defaults(func=run)


def _policy(args: argparse.Namespace) -> Policy | None:
    if args.policy is None:
        return None
    if args.policy == "block":
        return Policy.block(args.max_events, args.max_bytes, timeout=args.block_timeout)
    factory = getattr(Policy, args.policy)
    return factory(args.max_events, args.max_bytes)  # type: ignore[no-any-return]


def _json_body(event: Event) -> tuple[str, Any]:
    if event.type_url == JSON_TYPE_URL:
        try:
            return "event", json.loads(event.payload)
        except ValueError:
            pass
    if event.type_url and CONTAINERD_TYPES.lookup(event.type_url) is not None:
        return "event", decode_event(event.type_url, event.payload)
    return "payload", base64.b64encode(event.payload).decode()


def format_item(item: Item, as_json: bool) -> str:
    """One output line (without newline) for *item*."""
    if isinstance(item, Event):
        if as_json:
            key, body = _json_body(item)
            return json.dumps({
                "kind": "event", "namespace": item.namespace, "sequence": item.sequence,
                "topic": item.topic, "timestamp": item.timestamp.isoformat(),
                "type_url": item.type_url, key: body, "labels": dict(item.labels),
            })
        if item.type_url == JSON_TYPE_URL:
            text = item.payload.decode(errors="replace")
            return f"{go_time_string(item.timestamp_ns)} {item.namespace} {item.topic} {text}"
        return format_ctr_line(item.timestamp_ns, item.namespace, item.topic, item.type_url,
                               item.payload)
    if isinstance(item, DropNotice):
        if as_json:
            return json.dumps({"kind": "drop", "namespace": item.namespace,
                               "count": item.count, "first_sequence": item.first_sequence,
                               "last_sequence": item.last_sequence, "reason": item.reason})
        return (f"# DROPPED {item.count} events of {item.namespace} (sequences "
                f"{item.first_sequence}-{item.last_sequence}, reason {item.reason})")
    if isinstance(item, ResyncNotice):
        if as_json:
            return json.dumps({"kind": "resync", "namespace": item.namespace,
                               "requested_since": item.requested_since,
                               "oldest_available": item.oldest_available,
                               "reason": item.reason, "epoch": item.epoch})
        return (f"# RESYNC {item.namespace} requested_since={item.requested_since} "
                f"oldest_available={item.oldest_available} reason={item.reason} "
                f"epoch={item.epoch}")
    if isinstance(item, AvailabilityNotice):
        if as_json:
            return json.dumps({"kind": "availability", "namespace": item.namespace,
                               "available": item.available, "reason": item.reason})
        state = "AVAILABLE" if item.available else "UNAVAILABLE"
        return f"# {state} {item.namespace} reason={item.reason}"
    if as_json:
        return json.dumps({"kind": "ended", "reason": item.reason, "message": item.message})
    return f"# ENDED reason={item.reason} {item.message}"


def _epoch(values: list[str]) -> str | dict[str, str] | None:
    """``--epoch E`` (every namespace) or ``--epoch NS=E`` (repeatable)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    epochs: dict[str, str] = {}
    for value in values:
        ns, sep, epoch = value.partition("=")
        if not sep or not ns or not epoch:
            raise BroadcasterError("--epoch", f"{value!r}: give one epoch, or NS=EPOCH for "
                                   "each namespace")
        epochs[ns] = epoch
    return epochs


async def _watch(args: argparse.Namespace, out: TextIO) -> int:
    since = None
    if args.since is not None:
        if not args.namespace:
            raise BroadcasterError("--since", "needs --namespace")
        since = args.since
    seen = 0
    async with Client(args.addresses, timeout=args.timeout,
                      **client_options(args)) as client, client.subscribe(
        args.namespace or None, filters=args.filter, policy=_policy(args), since=since,
        epoch=_epoch(args.epoch),
    ) as sub:
        print(f"broadcaster subscribe: subscribed ({sub.id})", file=sys.stderr, flush=True)
        async for batch in sub.batches():
            lines = []
            for item in batch:
                lines.append(format_item(item, args.json))
                if isinstance(item, Event):
                    seen += 1
                    if seen == args.count:
                        break
                elif isinstance(item, Ended):
                    out.write("\n".join(lines) + "\n")
                    out.flush()
                    return 1
            out.write("\n".join(lines) + "\n")
            out.flush()
            if args.count is not None and seen >= args.count:
                return 0
    return 1


async def _main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        return await _watch(args, sys.stdout)
    except asyncio.CancelledError:
        if stopped:
            return 0
        raise


def run(args: argparse.Namespace) -> int:
    """Watch until the count, a signal, or the end of the subscription."""
    if args.count is not None and args.count < 1:
        print("broadcaster subscribe: --count: must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except (BroadcasterError, ClientError, ValueError, TimeoutError) as exc:
        print(f"broadcaster subscribe: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0

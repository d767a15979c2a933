"""``broadcaster stats``: the figures of a running server, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "format_table", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stats", help="show a running server's figures",
        description="Show per-namespace figures (published, delivered, dropped, subscribers, "
        "largest lag, evicted, sequences, retention) and server figures of a running broadcaster.",
    )
    parser.add_argument("--address", default="127.0.0.1:50051", metavar="ADDR",
                        help="server address: HOST:PORT or unix:PATH (default 127.0.0.1:50051)")
    parser.add_argument("--namespace", action="append", metavar="NS",
                        help="only this namespace; repeatable (default all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up after this long (default 5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from ..v1 import broadcaster_pb2 as pb
    from ..v1 import broadcaster_pb2_grpc as pb_grpc

    with grpc.insecure_channel(args.address) as channel:
        try:
            response = pb_grpc.BroadcasterStub(channel).Stats(
                pb.StatsRequest(namespaces=args.namespace or []), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"broadcaster stats: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    data = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(format_table(data))
    return 0


_COLUMNS = (
    ("namespace", "NAMESPACE"), ("published", "PUBLISHED"), ("delivered", "DELIVERED"),
    ("dropped", "DROPPED"), ("subscribers", "SUBS"), ("max_lag", "LAG"), ("evicted", "EVICTED"),
    ("head_sequence", "HEAD"), ("oldest_sequence", "OLDEST"),
    ("retained_events", "RETAINED"), ("retained_bytes", "BYTES"),
)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "0"
    return str(value)


def format_table(data: dict[str, Any]) -> str:
    """A readable table of a StatsResponse (as a dict with proto field names)."""
    rows = [[title for _, title in _COLUMNS]]
    rows += [[_cell(ns.get(key, "")) for key, _ in _COLUMNS] for ns in data.get("namespaces", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.append("")
    lines.append(f"epoch {data.get('epoch', '')}  subscriptions {data.get('subscriptions', 0)}  "
                 f"streams {data.get('streams', 0)}  "
                 f"uptime {float(data.get('uptime_seconds', 0)):.1f}s")
    return "\n".join(lines)

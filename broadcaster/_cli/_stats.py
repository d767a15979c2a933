"""``broadcaster stats``: the figures of a running server, as a table or JSON.

:class:`StatsReader` is the client side of the ``Stats`` call that ``stats`` and ``top``
share: one channel, one call per :meth:`StatsReader.read`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import json_format

from ..client import grpc_target
from ..v1 import broadcaster_pb2 as pb
from ..v1 import broadcaster_pb2_grpc as pb_grpc
from ._connect import channel
from ._publish import add_address_argument

__all__ = ["StatsError", "StatsReader", "add_parser", "as_dict", "format_table", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stats", help="show a running server's figures",
        description="Show per-namespace figures (published, delivered, dropped, subscribers, "
        "largest lag, evicted, sequences, retention) and server figures of a running "
        "broadcaster.",
    )
    add_address_argument(parser)
    parser.add_argument("--namespace", action="append", metavar="NS",
                        help="only this namespace; repeatable (default all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up after this long (default 5)")
    parser.set_defaults(func=run)


class StatsError(Exception):
    """A failed ``Stats`` call; ``str()`` is ``CODE: details``."""


class StatsReader:
    """Calls ``Stats`` on one server over one channel (a context manager).

    The channel reconnects at most a second after the server comes back, so a reader
    polling a restarting server recovers quickly. A connection attempt (connect, TLS
    and HTTP/2 handshakes) may take as long as a call: a busy server or a slow link is
    waited for until the call's deadline, not given up on after the reconnect backoff.

    :param address: ``HOST:PORT``, ``unix:PATH`` or a socket path
    :param timeout: seconds each call may take
    :param args: the command's options, for TLS and the token (None: plaintext)
    """

    def __init__(self, address: str, *, timeout: float,
                 args: argparse.Namespace | None = None) -> None:
        self._timeout = timeout
        options: list[tuple[str, Any]] = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # despite its name, gRPC's bound on one connection attempt (20 s by default;
            # 200 ms here failed every call to a server slower than that to handshake):
            # a second beyond the call's own deadline, so that the call ends by its own
            ("grpc.min_reconnect_backoff_ms", int((timeout + 1) * 1000)),
        ]
        self._channel = grpc.insecure_channel(grpc_target(address), options=options) \
            if args is None else channel(args, options)
        self._stub = pb_grpc.BroadcasterStub(self._channel)

    def __enter__(self) -> StatsReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def read(self, namespaces: Sequence[str] = ()) -> pb.StatsResponse:
        """One ``Stats`` call: these namespaces' figures (all when empty).

        :raises StatsError: when the call fails (unreachable server, unknown namespace...)
        """
        try:
            return self._stub.Stats(
                pb.StatsRequest(namespaces=list(namespaces)), timeout=self._timeout)
        except grpc.RpcError as exc:
            raise StatsError(f"{exc.code().name}: {exc.details()}") from None


def as_dict(response: pb.StatsResponse) -> dict[str, Any]:
    """A StatsResponse as a dict with the proto's field names, every field present
    (proto3 JSON: 64-bit integers are strings)."""
    return json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def run(args: argparse.Namespace) -> int:
    try:
        with StatsReader(args.address, timeout=args.timeout, args=args) as reader:
            data = as_dict(reader.read(args.namespace or []))
    except (StatsError, ValueError) as exc:
        print(f"broadcaster stats: {exc}", file=sys.stderr)
        return 1
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
    epoch = data.get("epoch") or "per-namespace"  # a jetstream log: each its own
    lines.append(f"epoch {epoch}  subscriptions {data.get('subscriptions', 0)}  "
                 f"streams {data.get('streams', 0)}  "
                 f"uptime {float(data.get('uptime_seconds', 0)):.1f}s")
    return "\n".join(lines)

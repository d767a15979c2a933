"""``broadcaster health``: ask a server's gRPC health service whether it is serving.

Prints the status (``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``, ``UNKNOWN``) and
exits 0 only for ``SERVING``; an unreachable server prints the gRPC code and exits 1.
With ``--wait SECONDS`` it asks again until the server is serving or the time is up,
which is what a service manager's start-up check or a container health check wants.
"""

from __future__ import annotations

import argparse
import sys
import time

import grpc
from grpc_health.v1 import health_pb2

from ._connect import channel
from ._publish import add_address_argument

__all__ = ["add_parser", "check", "run"]

_RETRY_EVERY = 0.2
#: grpcio-health-checking's HealthStub has no typed methods: the call is made by name
_CHECK = "/grpc.health.v1.Health/Check"
_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "health", help="check that a server is serving (gRPC health service)",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_address_argument(parser)
    parser.add_argument("--service", default="", metavar="NAME",
                        help="service to ask about, e.g. broadcaster.v1.Broadcaster "
                        "(default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                        help="seconds one check may take (default %(default)s)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="keep checking until serving, for at most this long (default: "
                        "check once)")
    parser.set_defaults(func=run)


def check(channel: grpc.Channel, service: str, timeout: float) -> str:
    """One health check: the status name, or ``CODE: details`` when the call failed."""
    call = channel.unary_unary(
        _CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    try:
        response = call(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # the server knows no such service
            return "SERVICE_UNKNOWN"
        return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def run(args: argparse.Namespace) -> int:
    try:
        opened = channel(args, [("grpc.max_reconnect_backoff_ms", 1000)])
    except ValueError as exc:
        print(f"broadcaster health: {exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + max(0.0, args.wait)
    with opened:
        while True:
            status = check(opened, args.service, args.timeout)
            left = deadline - time.monotonic()
            if status == "SERVING" or left <= 0:
                break
            time.sleep(min(_RETRY_EVERY, left))
    if status in _STATUSES:
        print(status)
    else:
        print(f"broadcaster health: {status}", file=sys.stderr)
    return 0 if status == "SERVING" else 1

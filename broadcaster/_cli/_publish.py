"""``broadcaster publish``: publish one event and print its sequence number.

Payload sources (exactly one; stdin when none is given):

* ``--json STR``: with ``--type NAME`` the JSON (as ``ctr events`` prints it) is encoded
  as that protobuf message, e.g. ``--type containerd.events.TaskExit``, and sent with
  containerd's bare type URL; without ``--type`` the JSON text itself is sent as the
  payload with type_url ``application/json``.
* ``--data STR``: the UTF-8 bytes of STR; ``--file F``: the bytes of F (``-``: stdin).
  Raw payloads have an empty type_url unless ``--type-url`` gives one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from .._core._errors import BroadcasterError
from .._typeurl import encode_json
from ..client import Client, ClientError
from ._connect import add_tls_arguments, client_options

__all__ = ["DEFAULT_ADDRESS", "add_address_argument", "add_parser", "run"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
JSON_TYPE_URL = "application/json"


class _Addresses(argparse.Action):
    """``--address A --address B`` or ``--address A,B``: every address, in order
    (``args.addresses``); ``args.address`` is the first."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        given = getattr(namespace, "addresses_given", None) or []
        given += [a for a in str(values).split(",") if a]
        namespace.addresses_given = given
        namespace.addresses = given
        namespace.address = given[0] if given else DEFAULT_ADDRESS


def add_address_argument(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """``--address`` and the TLS and token options; with *several*, the nodes of one
    cluster (the client fails over to the next when one breaks)."""
    add_tls_arguments(parser)
    default = os.environ.get("BROADCASTER_ADDRESS", DEFAULT_ADDRESS)
    defaults = [a for a in default.split(",") if a] or [DEFAULT_ADDRESS]
    parser.set_defaults(address=defaults[0], addresses=defaults)
    if several:
        parser.add_argument(
            "--address", action=_Addresses, metavar="ADDR[,ADDR...]",
            help="server address: HOST:PORT, unix:PATH or a socket path; several (comma-"
            "separated or repeated) for the nodes of one cluster: the next is used when one "
            f"fails (default: $BROADCASTER_ADDRESS or {DEFAULT_ADDRESS})",
        )
        return
    parser.add_argument(
        "--address", action=_Addresses, metavar="ADDR",
        help="server address: HOST:PORT, unix:PATH or a socket path (the first one if "
        f"several are given; default: $BROADCASTER_ADDRESS or {DEFAULT_ADDRESS})",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish", help="publish one event and print its sequence number",
        description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_address_argument(parser, several=True)
    parser.add_argument("--namespace", "-n", required=True, help="namespace, e.g. k8s.io")
    parser.add_argument("--topic", "-t", required=True, help="topic, e.g. /tasks/exit")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--json", metavar="STR", help="JSON payload (see --type)")
    source.add_argument("--data", metavar="STR", help="raw payload: the UTF-8 bytes of STR")
    source.add_argument("--file", metavar="F", help="raw payload read from file F ('-': stdin)")
    parser.add_argument(
        "--type", metavar="NAME",
        help="with --json: protobuf message type to encode the JSON as "
        "(e.g. containerd.events.TaskExit)",
    )
    parser.add_argument("--type-url", metavar="URL", help="type_url of a raw payload")
    parser.add_argument(
        "--label", "-l", action="append", default=[], metavar="K=V",
        help="label (repeatable)",
    )
    parser.add_argument(
        "--event-id", metavar="ID",
        help="the event's id (1-128 printable ASCII characters): publishing the same id "
        "again within the server's deduplication window stores it once and prints the "
        "original sequence (default: a new random id, so that a publish retried after a "
        "failure, on this or another --address, is stored once)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server (default: %(default)s)")
    parser.set_defaults(func=run)


def _payload(args: argparse.Namespace) -> tuple[str, bytes]:
    if args.type is not None and args.json is None:
        raise BroadcasterError("--type", "only goes with --json")
    if args.json is not None:
        try:
            data = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise BroadcasterError("--json", f"invalid JSON: {exc}") from exc
        if args.type is not None:
            if not isinstance(data, dict):
                raise BroadcasterError("--json", "must be a JSON object with --type")
            return encode_json(args.type, data)
        return args.type_url or JSON_TYPE_URL, args.json.encode()
    if args.data is not None:
        return args.type_url or "", args.data.encode()
    if args.file is not None and args.file != "-":
        try:
            with open(args.file, "rb") as f:
                return args.type_url or "", f.read()
        except OSError as exc:
            raise BroadcasterError("--file", str(exc)) from exc
    return args.type_url or "", sys.stdin.buffer.read()


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BroadcasterError("--label", f"{item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


async def _publish(args: argparse.Namespace, type_url: str, payload: bytes) -> int:
    async with Client(args.addresses, timeout=args.timeout, **client_options(args)) as client:
        return await client.publish(
            args.namespace, args.topic, payload, type_url=type_url, labels=_labels(args.label),
            event_id=args.event_id,
        )


def run(args: argparse.Namespace) -> int:
    """Publish and print the sequence; exit status 1 with the reason on failure."""
    try:
        type_url, payload = _payload(args)
        sequence = asyncio.run(_publish(args, type_url, payload))
    except (BroadcasterError, ClientError, ValueError) as exc:
        print(f"broadcaster publish: {exc}", file=sys.stderr)
        return 1
    print(sequence)
    return 0

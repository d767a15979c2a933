"""The ``broadcaster`` command: serve, publish, subscribe, stats, top, health, token."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _health, _publish, _serve, _stats, _subscribe, _token, _top

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broadcaster",
        description="Event-broadcast middleware for container runtimes: a gRPC pub/sub "
        "server with counted drops, overflow policies and containerd-compatible events.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (_serve, _publish, _subscribe, _stats, _top, _health, _token):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # serve --workers restarts it
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

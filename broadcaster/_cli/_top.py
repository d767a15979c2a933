"""``broadcaster top``: a live view of a running server, refreshed every second.

Shows the server's totals (subscriptions, streams, publish, delivery and drop rates)
and, per namespace: publish, delivery and drop rates per second, drops and evictions
since the server started, subscribers, the largest lag of a subscriber (events it has
yet to receive), the head sequence and what is retained. Rates are measured between two
Stats readings on the server's clock; they show as "-" until there are two, and again
after the server restarted.

Keys: q quits (so does Ctrl-C), s changes the sort order. When a reading fails the last
figures stay on screen with the error, and the next refresh tries again.

--once prints one sample (two readings --interval apart) as text and exits; --json prints
it as JSON, namespaces sorted by name; both exit 1 when the server cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from ._publish import add_address_argument
from ._stats import StatsError, StatsReader
from ._top_render import render, screen
from ._top_sample import SORT_KEYS, Sample, take_sample

if TYPE_CHECKING:
    import curses

    from ..v1 import broadcaster_pb2 as pb

__all__ = ["add_parser", "run"]

_SORTS = tuple(SORT_KEYS)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "top", help="live view of a running server (rates, drops, subscribers, lag)",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_address_argument(parser)
    parser.add_argument("--namespace", action="append", default=[], metavar="NS",
                        help="only this namespace; repeatable (default all)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between readings (default %(default)s)")
    parser.add_argument("--sort", choices=_SORTS, default="publish",
                        help="order of the namespaces: busiest first by publish or delivery "
                        "rate, drops, subscribers or lag, or by name (default %(default)s)")
    parser.add_argument("--once", action="store_true",
                        help="print one sample as text and exit (for scripts)")
    parser.add_argument("--json", action="store_true",
                        help="print one sample as JSON and exit (for scripts)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="seconds one reading may take (default %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("interval", "timeout"):
        if not getattr(args, name) > 0:
            print(f"broadcaster top: --{name} must be a positive number of seconds",
                  file=sys.stderr)
            return 2
    once = args.once or args.json
    if not once and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("broadcaster top: the live view needs a terminal; use --once or --json",
              file=sys.stderr)
        return 2
    try:
        reader = StatsReader(args.address, timeout=args.timeout, args=args)
    except ValueError as exc:
        print(f"broadcaster top: {exc}", file=sys.stderr)
        return 2
    with reader:
        return _print_once(reader, args) if once else _live(reader, args)


def _print_once(reader: StatsReader, args: argparse.Namespace) -> int:
    try:
        first = reader.read(args.namespace)
        time.sleep(args.interval)
        sample = take_sample(reader.read(args.namespace), first)
    except StatsError as exc:
        print(f"broadcaster top: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"address": args.address, **sample.to_json()}, indent=2))
    else:
        print(render(sample, args.address, args.sort))
    return 0


class _Quit(Exception):
    """SIGTERM: leave the live view like q does."""


def _quit(signum: int, frame: FrameType | None) -> None:
    raise _Quit


def _live(reader: StatsReader, args: argparse.Namespace) -> int:
    import curses

    view = _LiveView(reader, args)
    previous = signal.signal(signal.SIGTERM, _quit)
    try:
        curses.wrapper(view.run)
    except (KeyboardInterrupt, _Quit):
        pass
    except curses.error as exc:
        print(f"broadcaster top: cannot use the terminal: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _LiveView:
    """The curses loop: read every interval, redraw, and react to keys in between."""

    def __init__(self, reader: StatsReader, args: argparse.Namespace) -> None:
        self._reader = reader
        self._args = args
        self._sort = args.sort
        self._last: pb.StatsResponse | None = None
        self._sample: Sample | None = None
        self._error: str | None = None

    def run(self, window: curses.window) -> None:
        import curses

        with contextlib.suppress(curses.error):  # a terminal that cannot hide the cursor
            curses.curs_set(0)  # endwin() shows it again
        interval = self._args.interval
        next_read = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_read:
                self._read()
                self._draw(window)
                next_read = max(next_read + interval, time.monotonic())
            window.timeout(max(1, int((next_read - time.monotonic()) * 1000)))
            key = window.getch()
            if key in (ord("q"), ord("Q")):
                return
            if key == ord("s"):
                self._sort = _SORTS[(_SORTS.index(self._sort) + 1) % len(_SORTS)]
                self._draw(window)
            elif key == curses.KEY_RESIZE:
                self._draw(window)

    def _read(self) -> None:
        try:
            current = self._reader.read(self._args.namespace)
        except StatsError as exc:
            self._error = str(exc)
            return
        self._error = None
        self._sample = take_sample(current, self._last)
        self._last = current

    def _draw(self, window: curses.window) -> None:
        import curses

        height, width = window.getmaxyx()
        view = screen(self._sample, address=self._args.address, sort=self._sort,
                      error=self._error, width=max(1, width - 1), height=height)
        window.erase()
        for y, line in enumerate(view.lines):
            attr = curses.A_REVERSE if y == view.highlight else curses.A_NORMAL
            try:
                window.addstr(y, 0, line, attr)
            except curses.error:  # the terminal shrank while drawing
                break
        window.refresh()

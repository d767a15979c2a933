"""The text of ``broadcaster top``: a header with the server's totals and a table of
namespaces, cut to a terminal's size for the live view or whole for ``--once``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._top_sample import NamespaceRow, Sample, sorted_rows

__all__ = ["Screen", "format_bytes", "format_count", "format_duration", "format_rate",
           "render", "screen"]

_UNITS = ("", "k", "M", "G", "T", "P")


def _compact(value: float) -> str:
    for unit in _UNITS:
        if abs(value) < 999.5 or unit == _UNITS[-1]:
            return f"{value:.3g}{unit}" if unit else f"{value:.0f}"
        value /= 1000
    raise AssertionError("unreachable")


def format_rate(rate: float | None) -> str:
    """A rate per second in at most 5 characters: ``-`` (unknown), ``0``, ``7.5``,
    ``512``, ``12.3k``, ``2.15M``."""
    if rate is None:
        return "-"
    if rate == 0:
        return "0"
    if rate < 9.95:
        return f"{rate:.1f}"
    return _compact(rate)


def format_count(count: int) -> str:
    """A count exactly up to 99,999, then with 3 significant digits (``123k``, ``4.56M``)."""
    return str(count) if count < 100_000 else _compact(count)


def format_bytes(count: int) -> str:
    """Bytes in binary units: ``512B``, ``1.5KiB``, ``200MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1023.5 or unit == "TiB":
            return f"{count}B" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """An uptime: ``42s``, ``5m07s``, ``2h03m``, ``3d04h``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


# title, widest value (rates and counts take 5 characters, bytes 7), value of a row
_Column = tuple[str, int, Callable[[NamespaceRow], str]]

_COLUMNS: tuple[_Column, ...] = (
    ("PUB/s", 5, lambda row: format_rate(row.publish_rate)),
    ("DELIV/s", 5, lambda row: format_rate(row.delivery_rate)),
    ("DROP/s", 5, lambda row: format_rate(row.drop_rate)),
    ("DROPPED", 5, lambda row: format_count(row.dropped)),
    ("SUBS", 5, lambda row: format_count(row.subscribers)),
    ("LAG", 5, lambda row: format_count(row.max_lag)),
    ("EVICTED", 5, lambda row: format_count(row.evicted)),
    ("HEAD", 5, lambda row: format_count(row.head_sequence)),
    ("RETAINED", 5, lambda row: format_count(row.retained_events)),
    ("BYTES", 7, lambda row: format_bytes(row.retained_bytes)),
)
_WIDTHS = tuple(max(len(title), widest) + 2 for title, widest, _ in _COLUMNS)
_MIN_NAME_WIDTH = 12


def _header(sample: Sample, address: str) -> list[str]:
    every = "" if sample.interval_seconds is None else f"  over {sample.interval_seconds:.1f}s"
    return [
        f"broadcaster top  {address}  epoch {sample.epoch or 'per-namespace'}  "
        f"up {format_duration(sample.uptime_seconds)}{every}",
        f"subscriptions {format_count(sample.subscriptions)}  "
        f"streams {format_count(sample.streams)}  "
        f"namespaces {len(sample.namespaces)}",
        f"publish {format_rate(sample.total_rate('publish_rate'))}/s  "
        f"deliver {format_rate(sample.total_rate('delivery_rate'))}/s  "
        f"drop {format_rate(sample.total_rate('drop_rate'))}/s  "
        f"dropped {format_count(sample.total('dropped'))}  "
        f"evicted {format_count(sample.total('evicted'))}",
    ]


def _table(rows: Sequence[NamespaceRow], width: int | None) -> list[str]:
    """The table; within *width* characters the namespace column is cut (to no less than
    12) and then the columns that still do not fit are left out from the right."""
    longest = max([len("NAMESPACE"), *(len(row.namespace) for row in rows)])
    columns, widths = list(_COLUMNS), list(_WIDTHS)
    name_width = longest
    if width is not None:
        name_width = min(longest, max(_MIN_NAME_WIDTH, width - sum(widths)))
        while columns and name_width + sum(widths) > width:
            columns.pop()
            widths.pop()

    def name(text: str) -> str:
        return (text if len(text) <= name_width else text[:name_width - 1] + "~").ljust(name_width)

    def cells(texts: Sequence[str]) -> str:
        return "".join(text.rjust(w) for text, w in zip(texts, widths, strict=True))

    lines = [name("NAMESPACE") + cells([title for title, _, _ in columns])]
    lines += [name(row.namespace) + cells([cell(row) for _, _, cell in columns])
              for row in rows]
    return lines


def render(sample: Sample, address: str, sort: str) -> str:
    """The whole sample as text (``top --once``): header, blank line, every namespace."""
    return "\n".join([*_header(sample, address), "", *_table(sorted_rows(sample, sort), None)])


@dataclass(frozen=True, slots=True)
class Screen:
    """Lines for a terminal; ``highlight`` is the index of the table's title row."""

    lines: list[str]
    highlight: int | None


def screen(sample: Sample | None, *, address: str, sort: str, error: str | None,
           width: int, height: int) -> Screen:
    """The live view in *width* x *height* characters: header, a status line (the last
    error, or the sort order and keys), the table, and how many namespaces did not fit."""
    status = f"! {error} (retrying)" if error else f"sorted by {sort}  (s: sort, q: quit)"
    if sample is None:
        lines = [f"broadcaster top  {address}", "", status if error else "connecting..."]
        return Screen([line[:width] for line in lines[:height]], None)
    lines = [*_header(sample, address), status, ""]
    highlight = len(lines)
    rows = sorted_rows(sample, sort)
    room = height - len(lines) - 1
    shown = rows if len(rows) <= room else rows[:max(0, room - 1)]
    lines += _table(shown, width)
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more namespaces")
    return Screen([line[:width] for line in lines[:height]],
                  highlight if highlight < height else None)

"""Results: one JSON per scenario, summary.md, and PNG plots.

A peer's figures are set against ours only when both records ran the same subscriber
layout (``layout`` in the record, from the scenario): the ratio tables and the targets
against peers are built by :func:`comparable_pairs`, which refuses any other pair, so a
figure of a layout the peer did not run (the multiplexed one) carries no peer ratio.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cdf_points", "comparable_pairs", "peer_targets", "plot", "summary", "write_json"]

LAYOUT_NAMES = {
    "conn": "one connection per subscriber",
    "mux": "subscriptions multiplexed per process",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def cdf_points(values: Sequence[float], points: int = 400) -> list[list[float]]:
    """A downsampled empirical CDF of *values*: up to *points* ``[value, fraction]`` pairs
    at evenly spaced ranks, plus the 99th, 99.9th and last ranks so the tail survives.

    :param points: number of evenly spaced ranks kept
    """
    if not values:
        return []
    ordered = sorted(values)
    n = len(ordered)
    ranks = {min(n - 1, i * n // points) for i in range(points)}
    ranks |= {min(n - 1, int(q * n)) for q in (0.99, 0.999)} | {n - 1}
    return [[round(ordered[r], 4), round((r + 1) / n, 6)] for r in sorted(ranks)]


def write_json(out: Path, record: dict[str, Any]) -> Path:
    """Write *record* to ``out/<scenario>.json``."""
    path = out / f"{record['scenario']}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def comparable_pairs(records: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(ours, peer) record names whose figures may be compared: the peer names ours in
    ``peer_of``, both ran without error, and both ran the same subscriber layout (a
    record without a layout is compared with nothing)."""
    pairs = []
    for peer, rec in records.items():
        ours = rec.get("peer_of")
        if not ours or ours not in records:
            continue
        a, b = records[ours], rec
        if a.get("error") or b.get("error"):
            continue
        if a.get("layout") is None or a.get("layout") != b.get("layout"):
            continue
        pairs.append((ours, peer))
    return pairs


def _ratio_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    skip = ("lost", "kept up", "delivered %")
    return [k for k in a if k in b and isinstance(a[k], float) and isinstance(b[k], float)
            and b[k] and not k.endswith(skip)]


def _peer_ratios(records: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for ours, peer in comparable_pairs(records):
        a, b = records[ours]["median"], records[peer]["median"]
        for key in _ratio_keys(a, b):
            lines.append(f"| {ours} / {peer} | {key} | {_fmt(a[key])} | "
                         f"{_fmt(b[key])} | {a[key] / b[key]:.2f} |")
    return lines


#: Targets set against a peer measured in the same run (issue 14): (our scenario, peer
#: scenario, figure, "<=" or ">=", factor): ours OP factor x peer.
PEER_TARGETS: list[tuple[str, str, str, str, float]] = [
    ("grpc_fanout", "nats_fanout", "S=100", ">=", 3.0),
    ("grpc_fanout", "nats_fanout", "S=1", ">=", 1.0),
    ("grpc_latency", "nats_latency", "50/s S=100 p99 ms", "<=", 1.0),
    ("grpc_latency", "nats_latency", "500/s S=100 p99 ms", "<=", 2.0),
]


def peer_targets(records: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    """The targets of :data:`PEER_TARGETS` whose two records are comparable: a line of
    text and whether it holds, for each."""
    pairs = set(comparable_pairs(records))
    out = []
    for ours, peer, key, op, factor in PEER_TARGETS:
        if (ours, peer) not in pairs:
            continue
        a, b = records[ours]["median"].get(key), records[peer]["median"].get(key)
        if a is None or b is None:
            continue
        ok = a >= factor * b if op == ">=" else a <= factor * b
        out.append((f"{ours} {key} = {_fmt(a)} {op} {factor:g} x {peer} {_fmt(b)}", ok))
    return out


#: Rows of the layout table: label, fan-out, latency and ingest scenario of each.
LAYOUT_ROWS = [
    ("broadcaster, one connection + stream per subscriber", "grpc_fanout", "grpc_latency",
     "grpc_ingest"),
    ("broadcaster, one stream per subscriber process", "grpc_fanout_mux", "grpc_latency_mux",
     None),
    ("NATS, one connection per subscriber", "nats_fanout", "nats_latency", "nats_ingest"),
    ("Redis pub/sub, one connection per subscriber", "redis_fanout", "redis_latency",
     "redis_ingest"),
    ("grpc.aio floor (a relay, no hub: bench/floor_worker.py), one connection + stream per "
     "subscriber", "grpc_floor", "grpc_floor", None),
]


def _layout_table(records: dict[str, dict[str, Any]]) -> list[str]:
    def med(name: str | None, key: str) -> Any:
        rec = records.get(name or "")
        return None if rec is None or rec.get("error") else rec["median"].get(key)

    rows = []
    for label, fan, lat, ingest in LAYOUT_ROWS:
        if not any(n in records for n in (fan, lat, ingest) if n):
            continue
        cells = [_fmt(v) if (v := med(fan, f"S={s}")) is not None else "-"
                 for s in (1, 10, 100, 1000)]
        for rate in (50, 500, 5000):
            p50, p99 = med(lat, f"{rate}/s S=100 p50 ms"), med(lat, f"{rate}/s S=100 p99 ms")
            kept = med(lat, f"{rate}/s S=100 kept up")
            cell = f"{_fmt(p50)} / {_fmt(p99)}" if p50 is not None else "-"
            if kept is not None and kept < 0.5:
                cell += " (saturated)"
            cells.append(cell)
        v = med(ingest, "events/s in")
        cells.append(_fmt(v) if v is not None else "-")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["", "## Fan-out and latency by subscriber layout", "",
            "Deliveries/s by S (medians); latency p50 / p99 ms at S=100; ingest events/s "
            "(S=1, one publisher connection). Peer ratios are quoted only for the same "
            "layout.", "",
            "| layout | S=1 | S=10 | S=100 | S=1000 | 50/s p50 / p99 | 500/s p50 / p99 | "
            "5,000/s p50 / p99 | ingest ev/s |",
            "|---|---|---|---|---|---|---|---|---|", *rows]


def summary(records: dict[str, dict[str, Any]], machine: dict[str, Any]) -> str:
    """The markdown summary: median, target and verdict per scenario; the layout table;
    peer ratios and peer targets for comparable records only; extra sections a record
    brings along (``"report_md"``, e.g. the hostile clients' table)."""
    lines = [
        "# Benchmark summary", "",
        f"Machine: {machine['nproc']} CPUs, {machine['cpu_model']}; Python "
        f"{machine['python']}, grpcio {machine.get('grpc')}, protobuf "
        f"{machine.get('google.protobuf')}.", "",
        "Runs: " + (", ".join(sorted({f"{r.get('mode')} {r.get('date', 'undated')}"
                                      for r in records.values()})) or "none") + ".", "",
        "| scenario | layout | mode, runs | medians | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, rec in records.items():
        med = "; ".join(f"{k}: {_fmt(v)}" for k, v in rec["median"].items())
        verdict = {True: "PASS", False: "MISS", None: "-"}[rec["passed"]]
        if rec.get("error"):
            verdict, med = "NOT RUN", rec["error"]
        lines.append(f"| {name} | {rec.get('layout') or '-'} | {rec.get('mode')}, "
                     f"{len(rec['runs'])} | {med} | {rec['target']} | "
                     f"{verdict} ({rec.get('verdict', '')}) |")
    lines += _layout_table(records)
    targets = peer_targets(records)
    if targets:
        lines += ["", "## Targets against peers measured in the same run (same layout)", "",
                  "| target | verdict |", "|---|---|",
                  *[f"| {text} | {'PASS' if ok else 'MISS'} |" for text, ok in targets]]
    ratios = _peer_ratios(records)
    if ratios:
        lines += ["", "## Ratios against peers measured in the same run (same layout)", "",
                  "| pair | figure | ours | peer | ours/peer |", "|---|---|---|---|---|", *ratios]
    for rec in records.values():
        if rec.get("report_md"):
            lines += ["", rec["report_md"].rstrip()]
    return "\n".join(lines) + "\n"


_SIZE_KEY = re.compile(r"^(?:(\w+) )?S=(\d+)$")
_RATE_KEY = re.compile(r"^(\d+)/s S=100 p99 ms$")


def _label(name: str, rec: dict[str, Any]) -> str:
    layout = rec.get("layout")
    return f"{name} ({LAYOUT_NAMES.get(layout, layout)})" if layout else name


def plot(records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """throughput_vs_subscribers.png, latency_cdf.png and latency_vs_rate.png (records of
    the one-connection-per-subscriber layout only) from whatever records exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, rec in records.items():
        if "_fanout" not in name or rec.get("error"):
            continue
        series: dict[str, list[tuple[int, float]]] = {}
        for k, v in rec["median"].items():
            if m := _SIZE_KEY.match(k):
                series.setdefault(m.group(1) or "", []).append((int(m.group(2)), v))
        for backend, pts in sorted(series.items()):
            ax.plot(*zip(*sorted(pts), strict=True), marker="o",
                    label=f"{_label(name, rec)} {backend}".strip())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("deliveries / s (median)")
    ax.set_title("Fan-out throughput vs subscriber count")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7)
    path = out / "throughput_vs_subscribers.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)

    fig, ax = plt.subplots(figsize=(8, 5))
    drew = False
    for name, rec in records.items():
        if "_latency" not in name or rec.get("error") or not rec["runs"]:
            continue
        points = rec["runs"][-1].get("_detail", {}).get("latency_cdf_ms")
        if not points:  # older records pointed at raw samples in /tmp: nothing to draw
            continue
        sample, ys = zip(*points, strict=True)
        ax.plot(sample, ys, label=_label(name, rec))
        drew = True
    if drew:
        ax.set_xscale("log")
        ax.set_xlabel("publish-to-receive latency, ms")
        ax.set_ylabel("fraction of deliveries")
        ax.set_title("Latency CDF, 5,000 events/s, S=100 (last run)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = out / "latency_cdf.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        made.append(path)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    drew = False
    for name, rec in records.items():
        # one connection per subscriber only: the layout all three systems ran
        if not ("_latency" in name or name == "grpc_floor") or rec.get("error") \
                or rec.get("layout") != "conn":
            continue
        pts = sorted((int(m.group(1)), v) for k, v in rec["median"].items()
                     if (m := _RATE_KEY.match(k)) and v is not None)
        if not pts:
            continue
        rates, p99 = zip(*pts, strict=True)
        (line,) = ax.plot(rates, p99, marker="o", label=_label(name, rec))
        kept = [rec["median"].get(f"{r}/s S=100 kept up", 1.0) >= 0.5 for r in rates]
        sat = [(r, v) for r, v, k in zip(rates, p99, kept, strict=True) if not k]
        if sat:  # hollow markers where the system did not keep up with the offered rate
            ax.plot(*zip(*sat, strict=True), linestyle="none", marker="o", markersize=11,
                    markerfacecolor="white", markeredgecolor=line.get_color())
        drew = True
    if drew:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate, events/s (S=100 subscribers)")
        ax.set_ylabel("p99 publish-to-receive latency, ms (median of runs)")
        ax.set_title("p99 latency vs offered rate, one connection per subscriber "
                     "(hollow: did not keep up)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = out / "latency_vs_rate.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        made.append(path)
    plt.close(fig)
    return made

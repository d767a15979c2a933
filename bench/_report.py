"""Results: one JSON per scenario, summary.md, and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cdf_points", "plot", "summary", "write_json"]


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


def _peer_ratios(records: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for ours, peers in (("grpc_fanout", ("nats_fanout", "redis_fanout")),
                        ("grpc_latency", ("nats_latency", "redis_latency"))):
        if ours not in records:
            continue
        for peer in peers:
            if peer not in records:
                continue
            a, b = records[ours]["median"], records[peer]["median"]
            for key in a:
                if key in b and isinstance(a[key], float) and b[key] and "lost" not in key:
                    lines.append(f"| {ours} / {peer} | {key} | {_fmt(a[key])} | "
                                 f"{_fmt(b[key])} | {a[key] / b[key]:.2f} |")
    return lines


def summary(records: dict[str, dict[str, Any]], machine: dict[str, Any]) -> str:
    """The markdown summary: median, target and verdict per scenario; peer ratios."""
    lines = [
        "# Benchmark summary", "",
        f"Machine: {machine['nproc']} CPUs, {machine['cpu_model']}; Python "
        f"{machine['python']}, grpcio {machine.get('grpc')}, protobuf "
        f"{machine.get('google.protobuf')}.", "",
        "Runs: " + (", ".join(sorted({f"{r.get('mode')} {r.get('date', 'undated')}"
                                      for r in records.values()})) or "none") + ".", "",
        "| scenario | mode, runs | medians | target | verdict |", "|---|---|---|---|---|",
    ]
    for name, rec in records.items():
        med = "; ".join(f"{k}: {_fmt(v)}" for k, v in rec["median"].items())
        verdict = {True: "PASS", False: "MISS", None: "-"}[rec["passed"]]
        if rec.get("error"):
            verdict, med = "NOT RUN", rec["error"]
        lines.append(f"| {name} | {rec.get('mode')}, {len(rec['runs'])} | {med} | "
                     f"{rec['target']} | "
                     f"{verdict} ({rec.get('verdict', '')}) |")
    ratios = _peer_ratios(records)
    if ratios:
        lines += ["", "## Ratios against peers measured in the same run", "",
                  "| pair | figure | ours | peer | ours/peer |", "|---|---|---|---|---|", *ratios]
    return "\n".join(lines) + "\n"


def plot(records: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """throughput_vs_subscribers.png and latency_cdf.png from whatever records exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rec in records.items():
        if not name.endswith("fanout") or rec.get("error"):
            continue
        pts = sorted((int(k.split("S=")[1]), v) for k, v in rec["median"].items()
                     if "S=" in k and not k.endswith("lost"))
        prefix = [k.split(" S=")[0] for k in rec["median"] if " S=" in k]
        for backend in sorted(set(prefix)) or [""]:
            sel = sorted((int(k.split("S=")[1]), v) for k, v in rec["median"].items()
                         if k.startswith(backend) and "S=" in k and not k.endswith("lost"))
            if sel:
                ax.plot(*zip(*sel, strict=True), marker="o",
                        label=f"{name} {backend}".strip())
        if not prefix and pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
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

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = False
    for name, rec in records.items():
        if not name.endswith("latency") or rec.get("error"):
            continue
        points = rec["runs"][-1].get("_detail", {}).get("latency_cdf_ms")
        if not points:  # older records pointed at raw samples in /tmp: nothing to draw
            continue
        sample, ys = zip(*points, strict=True)
        ax.plot(sample, ys, label=name)
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
    return made

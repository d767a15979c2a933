"""``python -m bench run --quick|--full [--scenario NAME]... [--runs N] [--abuse NAME]...``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import statistics
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._hostile import grpc_hostile
from bench._machine import machine
from bench._report import plot, summary, write_json
from bench._scenarios import QUICK, SCENARIOS, Scenario
from bench._servers import grpc_available
from bench.hostile_worker import ABUSES

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
# --quick writes here by default, so a quick check never overwrites the full results
QUICK_RESULTS = RESULTS / "quick"


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in runs[0] if not k.startswith("_")]
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
        if vals:
            out[k] = float(statistics.median(vals))
    return out


def run_scenario(name: str, full: bool, runs: int, info: dict[str, Any],
                 scenario: Scenario | None = None) -> dict[str, Any]:
    """Run scenario *name* (or *scenario*, a variant of it) *runs* times; return its
    result record."""
    sc = scenario or SCENARIOS[name]
    record: dict[str, Any] = {
        "scenario": name, "title": sc.title, "mode": "full" if full else "quick",
        "machine": info, "target": sc.target, "layout": sc.layout, "peer_of": sc.peer_of,
        "runs": [], "median": {}, "passed": None,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    why = grpc_available() if sc.needs_grpc else None
    if why:
        record["error"] = why
        record["seconds"] = 0.0
        return record
    started = time.monotonic()
    try:
        for _ in range(runs):
            record["runs"].append(sc.run(full))
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        record["traceback"] = traceback.format_exc()
    if record["runs"]:
        record["median"] = _median(record["runs"])
        record["cpu_s_per_run"] = [_cpu(r) for r in record["runs"]]
        record["verdict"], record["passed"] = sc.check(record["median"])
        if sc.report is not None:
            record["report_md"] = sc.report(record)
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def _cpu(run: dict[str, Any]) -> dict[str, Any]:
    detail = run.get("_detail", {})
    if "cpu_s" in detail:
        return detail["cpu_s"]
    return {k: v.get("cpu_s") for k, v in detail.items() if isinstance(v, dict)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0 (misses are reported, not fatal), 2 on bad usage."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios and write bench/results/")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small variant (< 2 min)")
    mode.add_argument("--full", action="store_true", help="full variant (targets)")
    run.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), default=None)
    run.add_argument("--runs", type=int, default=None, help="runs per scenario (median)")
    run.add_argument("--abuse", action="append", choices=sorted(ABUSES), default=None,
                     help="grpc_hostile: run only this abuse (repeatable)")
    run.add_argument("--out", type=Path, default=None,
                     help=f"results folder (default {RESULTS.name}/, or "
                     f"{RESULTS.name}/{QUICK_RESULTS.name}/ with --quick)")
    sub.add_parser("list", help="list scenarios")
    rebuild = sub.add_parser("summary", help="rebuild summary.md and plots from the JSON")
    rebuild.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "summary":
        records = {}
        for path in sorted(args.out.glob("*.json")):
            rec = json.loads(path.read_text())
            records[rec["scenario"]] = rec
        order = [n for n in SCENARIOS if n in records]
        records = {n: records[n] for n in order}
        info = next(iter(records.values()))["machine"] if records else machine()
        (args.out / "summary.md").write_text(text := summary(records, info))
        plot(records, args.out)
        print(text)
        return 0
    if args.command == "list":
        for sc in SCENARIOS.values():
            print(f"{sc.name:24} {sc.title}  [target: {sc.target}]")
            if sc.name == "grpc_hostile":
                for abuse in ABUSES.values():
                    print(f"  --abuse {abuse.name:26} {abuse.title}")
        return 0
    full = bool(args.full)
    if args.out is None:
        args.out = RESULTS if full else QUICK_RESULTS
    names = args.scenario or (list(SCENARIOS) if full else QUICK)
    variants: dict[str, Scenario] = {}
    if args.abuse:  # those abuses of grpc_hostile (and any scenario named with them)
        names = [n for n in args.scenario or [] if n != "grpc_hostile"] + ["grpc_hostile"]
        variants["grpc_hostile"] = dataclasses.replace(
            SCENARIOS["grpc_hostile"],
            run=functools.partial(grpc_hostile, abuses=args.abuse))
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = args.runs or (SCENARIOS[name].runs if full else None) or (3 if full else 1)
        print(f"[bench] {name} ({runs} run(s), {'full' if full else 'quick'})", flush=True)
        rec = run_scenario(name, full, runs, info, variants.get(name))
        records[name] = rec
        write_json(args.out, rec)
        status = rec.get("error") or rec.get("verdict")
        print(f"[bench]   {status} [{rec['seconds']} s]", flush=True)
    text = summary(records, info)
    (args.out / "summary.md").write_text(text)
    try:
        plots = plot(records, args.out)
    except ImportError as exc:
        plots = []
        print(f"[bench] no plots: {exc} (pip install matplotlib)")
    print(text)
    print("[bench] wrote", args.out, *[p.name for p in plots])
    return 0

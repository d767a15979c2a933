#!/usr/bin/env python3
"""Generate the Grafana dashboard ``deploy/grafana/broadcaster.json``.

The dashboard is written as data here: rows of panels, each panel a title, a unit and
PromQL queries with their legends. Adding a panel is adding one ``Panel(...)`` line to a
row (or a ``Row``); the layout (grid positions, ids) and Grafana's JSON boilerplate are
computed. Every query selects ``job="$job", instance=~"$instance"`` through ``SEL`` (and
``namespace=~"$namespace"`` through ``NS``), the dashboard's variables.

Usage:
    python scripts/gen_dashboard.py            # rewrite the JSON (``make dashboard``)
    python scripts/gen_dashboard.py --check    # exit 1 if the committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "grafana" / "broadcaster.json"

SEL = 'job="$job", instance=~"$instance"'
NS = f'{SEL}, namespace=~"$namespace"'
RATE = "[$__rate_interval]"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    """One panel: *queries* are (PromQL, legend) pairs; *kind* is timeseries or stat."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    description: str = ""
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return (expr, legend)


ROWS = (
    Row("Overview", (
        Panel("Servers up", "none", (q(f"sum(up{{{SEL}}})"),), kind="stat", width=4, height=4,
              description="Targets of the job Prometheus scrapes successfully."),
        Panel("Uptime", "s", (q(f"min(broadcaster_uptime_seconds{{{SEL}}})"),), kind="stat",
              width=4, height=4, description="Shortest uptime of the selected servers; "
              "a restart empties the in-memory log."),
        Panel("Subscriptions", "short", (q(f"sum(broadcaster_subscriptions{{{SEL}}})"),),
              kind="stat", width=4, height=4),
        Panel("Published", "cps",
              (q(f"sum(rate(broadcaster_events_published_total{{{NS}}}{RATE}))"),),
              kind="stat", width=4, height=4),
        Panel("Delivered", "cps",
              (q(f"sum(rate(broadcaster_events_delivered_total{{{NS}}}{RATE}))"),),
              kind="stat", width=4, height=4),
        Panel("Dropped", "cps",
              (q(f"sum(rate(broadcaster_events_dropped_total{{{NS}}}{RATE})) or vector(0)"),),
              kind="stat", width=4, height=4,
              options={"thresholds": [("green", None), ("red", 1e-9)]}),
    )),
    Row("Events", (
        Panel("Published by namespace", "cps", (q(
            f"sum by (namespace) (rate(broadcaster_events_published_total{{{NS}}}{RATE}))",
            "{{namespace}}"),), description="Events published per second."),
        Panel("Delivered by namespace", "cps", (q(
            f"sum by (namespace) (rate(broadcaster_events_delivered_total{{{NS}}}{RATE}))",
            "{{namespace}}"),),
            description="Deliveries per second: one event to three subscribers is three."),
        Panel("Dropped by namespace and reason", "cps", (q(
            f"sum by (namespace, reason) "
            f"(rate(broadcaster_events_dropped_total{{{NS}}}{RATE}))",
            "{{namespace}} {{reason}}"),),
            description="Deliveries lost under a subscriber's overflow policy (or to "
            "retention while replaying); each is reported to its subscriber in a DropNotice."),
        Panel("Evicted subscribers by namespace and reason", "short", (q(
            f"sum by (namespace, reason) "
            f"(increase(broadcaster_subscribers_evicted_total{{{NS}}}{RATE}))",
            "{{namespace}} {{reason}}"),),
            description="Subscriptions the server ended: slow_consumer (disconnect policy), "
            "heartbeat_timeout (no acknowledgement)."),
        Panel("Head sequence by namespace", "short", (q(
            f"max by (namespace) (broadcaster_namespace_head_sequence{{{NS}}})",
            "{{namespace}}"),), description="Newest sequence number of each namespace."),
    )),
    Row("Subscribers", (
        Panel("Subscribers by namespace", "short", (q(
            f"sum by (namespace) (broadcaster_subscribers{{{NS}}})", "{{namespace}}"),),
            description="Subscriptions covering each namespace (all-namespace ones count "
            "in each)."),
        Panel("Largest lag by namespace", "short", (q(
            f"max by (namespace) (broadcaster_subscriber_max_lag_events{{{NS}}})",
            "{{namespace}}"),),
            description="Events the furthest-behind subscriber of the namespace has yet to "
            "receive."),
        Panel("Retained events by namespace", "short", (q(
            f"sum by (namespace) (broadcaster_retained_events{{{NS}}})", "{{namespace}}"),),
            description="Events kept for resume (bounded by each namespace's retention)."),
        Panel("Retained bytes by namespace", "bytes", (q(
            f"sum by (namespace) (broadcaster_retained_bytes{{{NS}}})", "{{namespace}}"),)),
    )),
    Row("Delivery latency", (
        Panel("Delivery latency quantiles", "s", tuple(q(
            f"histogram_quantile({quantile}, sum by (le) "
            f"(rate(broadcaster_delivery_latency_seconds_bucket{{{NS}}}{RATE})))",
            f"p{label}") for quantile, label in ((0.5, "50"), (0.9, "90"), (0.99, "99"))),
            width=12, description="Publish to delivery, from the histogram (a batch counts "
            "its oldest event's age for each of its events: an upper bound)."),
        Panel("p99 delivery latency by namespace", "s", (q(
            "histogram_quantile(0.99, sum by (namespace, le) "
            f"(rate(broadcaster_delivery_latency_seconds_bucket{{{NS}}}{RATE})))",
            "{{namespace}}"),), width=12),
    )),
    Row("gRPC", (
        Panel("Requests by method and code", "reqps", (q(
            f"sum by (method, code) (rate(broadcaster_grpc_requests_total{{{SEL}}}{RATE}))",
            "{{method}} {{code}}"),), description="Finished RPCs per second."),
        Panel("Errors by method and code", "reqps", (q(
            f'sum by (method, code) (rate(broadcaster_grpc_requests_total{{{SEL}, '
            f'code!~"OK|CANCELLED"}}{RATE}))', "{{method}} {{code}}"),),
            description="RPCs that ended with an error status (cancellations by the client "
            "left out)."),
        Panel("Rejected requests by reason", "reqps", (q(
            f"sum by (reason) (rate(broadcaster_grpc_rejected_total{{{SEL}}}{RATE}))",
            "{{reason}}"),),
            description="Rejected requests and sub-requests (PublishStream batches, "
            "subscription Adds)."),
        Panel("Open streams by method", "short", (q(
            f"sum by (method) (broadcaster_grpc_streams_open{{{SEL}}})", "{{method}}"),)),
    )),
    Row("Process", (
        Panel("CPU", "percentunit", (q(
            f"rate(process_cpu_seconds_total{{{SEL}}}{RATE})", "{{instance}}"),),
            description="CPU time per second (100% = one core; the server's event loop "
            "is one thread, gRPC adds its own)."),
        Panel("Resident memory", "bytes", (q(
            f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}"),)),
        Panel("Open file descriptors", "short", (
            q(f"process_open_fds{{{SEL}}}", "{{instance}} open"),
            q(f"process_max_fds{{{SEL}}}", "{{instance}} limit"))),
        Panel("Garbage collections by generation", "cps", (q(
            f"sum by (generation) (rate(python_gc_collections_total{{{SEL}}}{RATE}))",
            "generation {{generation}}"),)),
    )),
)


def _variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, expr: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
                "query": {"query": expr, "refId": name}, "definition": expr, "refresh": 2,
                "multi": True, "includeAll": True, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0},
        {"name": "job", "label": "Job", "type": "textbox", "query": "broadcaster",
         "current": {"text": "broadcaster", "value": "broadcaster"}, "hide": 0},
        query("instance", "Instance", 'label_values(broadcaster_uptime_seconds{job="$job"}, '
              "instance)"),
        query("namespace", "Namespace", "label_values(broadcaster_events_published_total"
              '{job="$job", instance=~"$instance"}, namespace)'),
    ]


def _panel(panel: Panel, ident: int, x: int, y: int) -> dict[str, Any]:
    targets = [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto",
                "refId": chr(ord("A") + i), "range": True}
               for i, (expr, legend) in enumerate(panel.queries)]
    steps = [{"color": color, "value": value}
             for color, value in panel.options.get("thresholds", [("green", None)])]
    defaults: dict[str, Any] = {"unit": panel.unit, "mappings": [],
                                "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.kind == "stat":
        options: dict[str, Any] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
            "orientation": "auto", "textMode": "auto"}
        defaults["color"] = {"mode": "thresholds"}
    else:
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never", "spanNulls": False,
                              "axisSoftMin": 0}
    return {"id": ident, "type": panel.kind, "title": panel.title,
            "description": panel.description, "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options, "targets": targets}


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row.title,
                       "collapsed": False, "panels": [],
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "uid": "broadcaster",
        "title": "broadcaster",
        "description": "Event-broadcast hub for container runtimes: publish and delivery "
                       "rates, drops, evictions, subscribers, lag, latency, gRPC, process. "
                       "Generated by scripts/gen_dashboard.py.",
        "tags": ["broadcaster", "containers"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": _variables()},
        "panels": _panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed dashboard differs from the generated one")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"gen_dashboard: {OUTPUT.relative_to(ROOT)} is stale; run make dashboard",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"gen_dashboard: wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

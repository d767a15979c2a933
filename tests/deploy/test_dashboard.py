"""deploy/grafana: the dashboard is generated, laid out, its queries are PromQL that
promtool parses, and it and the alerting rules use only metrics a real server exports."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from ._files import DEPLOY, ROOT, http_get, run, running

pytestmark = pytest.mark.anyio

DASHBOARD = DEPLOY / "grafana" / "broadcaster.json"
RULES = DEPLOY / "prometheus" / "broadcaster-alerts.yml"
CLI = [sys.executable, "-m", "broadcaster._cli"]
METRIC = re.compile(r"\b((?:broadcaster|process|python)_[a-z0-9_]+|up)\s*\{")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries() -> list[tuple[int, str, str]]:
    """(panel id, refId, expr) of every query."""
    return [(panel["id"], target["refId"], target["expr"])
            for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def concrete(expr: str) -> str:
    """A query with the dashboard's variables as Grafana would fill them in."""
    for name, value in (("$__rate_interval", "1m"), ("$job", "broadcaster"),
                        ("$instance", ".*"), ("$namespace", ".*")):
        expr = expr.replace(name, value)
    return expr


async def test_committed_dashboard_is_what_the_generator_writes() -> None:
    code, out, err = await run([sys.executable, str(ROOT / "scripts" / "gen_dashboard.py"),
                                "--check"])
    assert code == 0, out + err


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            refs = [t["refId"] for t in panel["targets"]]
            assert panel["targets"] and len(set(refs)) == len(refs), panel["title"]


def test_queries_use_only_defined_variables() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | {"__rate_interval"}
    used = set()
    for panel in dashboard()["panels"]:
        used |= set(re.findall(r"\$\{?(\w+)", json.dumps(panel)))
    for variable in dashboard()["templating"]["list"]:
        used |= set(re.findall(r"\$\{?(\w+)", json.dumps(variable.get("query", ""))))
    assert used <= defined, used - defined


async def test_every_query_is_promql_that_promtool_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed (.ci/run installs it)"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{panel}_{ref}", "expr": concrete(expr)}
        for panel, ref, expr in queries()]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    code, out, err = await run([promtool, "check", "rules", str(path)])
    assert code == 0 and f"SUCCESS: {len(queries())} rules found" in out, out + err


def used_metrics() -> set[str]:
    names = {m for _, _, expr in queries() for m in METRIC.findall(expr)}
    return names | set(METRIC.findall(RULES.read_text()))


def exported(exposition: str) -> set[str]:
    """Series names a Prometheus text exposition can produce (from its TYPE lines)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names |= ({f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram"
                  else {name})
    return names


async def test_dashboard_and_alerts_use_only_metrics_the_server_exports(tmp_path: Path) -> None:
    """What the operator's Prometheus scrapes from `broadcaster serve` (the ``up`` series
    is Prometheus' own); and what the dashboard must show is there."""
    argv = [*CLI, "serve", "--listen", f"unix:{tmp_path / 's.sock'}",
            "--metrics-listen", "127.0.0.1:0"]
    async with running(argv) as server:
        assert server.metrics is not None
        status, body = await http_get(server.metrics, "/metrics")
        assert status == 200
        await server.stop()
    missing = used_metrics() - exported(body) - {"up"}
    assert not missing, f"not exported by the server: {sorted(missing)}"
    dashboard_metrics = {m for _, _, expr in queries() for m in METRIC.findall(expr)}
    assert {  # what the dashboard is for
        "broadcaster_events_published_total", "broadcaster_events_delivered_total",
        "broadcaster_events_dropped_total", "broadcaster_subscribers_evicted_total",
        "broadcaster_subscribers", "broadcaster_subscriber_max_lag_events",
        "broadcaster_delivery_latency_seconds_bucket", "broadcaster_grpc_requests_total",
        "process_cpu_seconds_total", "process_resident_memory_bytes",
    } <= dashboard_metrics

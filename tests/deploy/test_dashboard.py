"""deploy/grafana: the dashboard is generated, laid out, its queries are PromQL that
promtool parses, and it and the alerting rules use only metrics a real server exports."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from broadcaster._cli._serve import process_registry
from broadcaster.grpc import Server, ServerConfig

from .._loops import ASYNCIO
from ._files import DEPLOY, ROOT, run

pytestmark = pytest.mark.anyio
# the async tests share one event loop: grpc.aio runs in this process
shared_loop = pytest.mark.usefixtures("shared_event_loop")

DASHBOARD = DEPLOY / "grafana" / "broadcaster.json"
RULES = DEPLOY / "prometheus" / "broadcaster-alerts.yml"
METRIC = re.compile(r"\b((?:broadcaster|process|python)_[a-z0-9_]+|up)\s*\{")


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


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


def test_committed_dashboard_is_what_the_generator_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("gen_dashboard",
                                                  ROOT / "scripts" / "gen_dashboard.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gen_dashboard", generator)  # for its dataclasses
    spec.loader.exec_module(generator)
    assert DASHBOARD.read_text() == generator.render(), "stale: run make dashboard"


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


@shared_loop
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


@shared_loop
async def test_dashboard_and_alerts_use_only_metrics_the_server_exports(tmp_path: Path) -> None:
    """What the operator's Prometheus scrapes from a server with the registry `broadcaster
    serve` gives it (the ``up`` series is Prometheus' own); and what the dashboard must
    show is there."""
    config = ServerConfig(listen=[f"unix:{tmp_path / 's.sock'}"], grace_period=0.5)
    async with Server(config, registry=process_registry()) as server:
        body = generate_latest(server.registry).decode()
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

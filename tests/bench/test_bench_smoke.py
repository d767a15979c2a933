"""Smoke test of the load-benchmark harness: the smallest variants of a few scenarios,
so the harness cannot rot. Real processes, real loopback sockets; well under 30 s."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._net import net_run
from bench._scenarios import core

ROOT = Path(__file__).resolve().parents[2]


def test_core_fanout_counts_every_delivery() -> None:
    result = core({"scenario": "fanout", "subscribers": 10, "events": 2000}, deadline=30)
    assert result["expected"] == 20_000
    assert result["delivered"] == 20_000
    assert result["lost"] == 0
    assert result["deliveries_per_s"] > 0
    assert result["cpu_s"]["core"] > 0  # CPU read from /proc while the child ran


def test_core_churn_returns_to_zero_subscriptions() -> None:
    result = core({"scenario": "churn", "cycles": 300}, deadline=30)
    assert result["subscriptions_left"] == 0
    assert result["rss_after"] > 0


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server not installed")
def test_nats_peer_fanout_and_latency_over_loopback() -> None:
    pytest.importorskip("nats")
    result = net_run("nats", 4, 500, procs=2, rate=5000, latency=True, deadline=20)
    assert result["published"] == 500
    assert result["delivered"] == 2000
    assert result["lost"] == 0
    lat = result["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert set(result["cpu_s"]) >= {"server", "pub", "sub0", "sub1"}


def test_cli_writes_json_and_summary(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--scenario", "core_churn",
         "--runs", "2", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=40, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "core_churn.json").read_text())
    assert record["scenario"] == "core_churn"
    assert len(record["runs"]) == 2
    assert record["median"]["subscriptions left"] == 0
    assert record["machine"]["nproc"] >= 1
    assert record["passed"] in (True, False)
    assert "core_churn" in (tmp_path / "summary.md").read_text()

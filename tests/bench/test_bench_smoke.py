"""Smoke test of the load-benchmark harness: the smallest variants of a few scenarios,
so the harness cannot rot. Real processes, real loopback sockets; each well under 30 s."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench._hostile
from bench._grpc_scale import grpc_churn_run, grpc_idle_run
from bench._hostile import HEALTHY, abuse_run, cpu_waits, grpc_hostile, hostile_report
from bench._kubelet import kubelet_run
from bench._net import net_run
from bench._proc import cpu_wait_seconds
from bench._report import cdf_points, comparable_pairs, peer_targets, plot, summary
from bench._scenarios import core
from bench._servers import PEER_SOURCES, grpc_available, peer_binary
from bench.hostile_worker import GARBAGE_METHODS

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


def test_kubelet_watchers_get_exactly_their_own_exits() -> None:
    result = kubelet_run(6, 30, 2, deadline=40)
    assert (result["published"], result["publish_errors"]) == (180, 0)
    assert result["expected"] == result["delivered"] == 12
    assert (result["lost"], result["wrong"], result["per_watcher_counts"]) == (0, 0, [2])
    plain = kubelet_run(4, 10, 1, plain=True, deadline=40)
    assert plain["delivered"] == 40 and plain["per_watcher_counts"] == [10]


def _need_peer(name: str) -> None:
    """Fail (never skip: CI must run the peers) when a peer's server is missing."""
    if peer_binary(name) is None:
        pytest.fail(f"{name} is not installed: it comes from the {PEER_SOURCES[name]}")


def test_nats_peer_fanout_and_latency_over_loopback() -> None:
    _need_peer("nats-server")
    result = net_run("nats", 4, 500, procs=2, rate=5000, latency=True, deadline=20)
    assert result["published"] == 500
    assert result["delivered"] == 2000
    assert result["lost"] == 0
    lat = result["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert set(result["cpu_s"]) >= {"server", "pub", "sub0", "sub1"}
    # the CDF for the plot travels in the result; nothing points at vanishing /tmp files
    assert result["latency_samples"] == 2000
    cdf = result["latency_cdf_ms"]
    assert cdf[-1] == [pytest.approx(lat["max"], abs=1e-3), 1.0]
    assert all(a[0] <= b[0] and a[1] < b[1] for a, b in itertools.pairwise(cdf))
    assert not any(isinstance(v, str) and v.startswith("/tmp") for v in result.values())


def test_redis_peer_raw_publisher_loses_nothing() -> None:
    _need_peer("redis-server")
    result = net_run("redis", 3, 300, procs=2, deadline=20)
    assert result["published"] == 300
    assert result["delivered"] == 900
    assert result["lost"] == 0
    assert result["server_connections"] == 3  # one connection per subscriber
    assert result["publisher"] == {"errors": 0, "broken": None}


def _record(layout: str | None, peer_of: str | None = None, **median: float) -> dict:
    return {"layout": layout, "peer_of": peer_of, "median": median, "runs": [{}],
            "passed": None, "target": "", "mode": "quick"}


def test_peer_ratios_and_targets_only_for_the_same_layout() -> None:
    records = {
        "grpc_fanout": _record("conn", **{"S=100": 300.0, "S=1": 50.0}),
        "grpc_fanout_mux": _record("mux", **{"S=100": 900.0}),
        "nats_fanout": _record("conn", "grpc_fanout", **{"S=100": 100.0, "S=1": 100.0}),
        # a peer pointed at the multiplexed layout it did not run: never compared
        "odd_fanout": _record("conn", "grpc_fanout_mux", **{"S=100": 100.0}),
        # a record from before layouts were recorded: never compared either
        "old_fanout": _record(None, "grpc_fanout", **{"S=100": 100.0}),
    }
    assert comparable_pairs(records) == [("grpc_fanout", "nats_fanout")]
    assert peer_targets(records) == [
        ("grpc_fanout S=100 = 300 >= 3 x nats_fanout 100", True),
        ("grpc_fanout S=1 = 50 >= 1 x nats_fanout 100", False),
    ]
    text = summary(records, {"nproc": 2, "cpu_model": "x", "python": "3"})
    assert "| grpc_fanout / nats_fanout | S=100 | 300 | 100 | 3.00 |" in text
    assert "grpc_fanout_mux /" not in text
    assert "/ odd_fanout" not in text and "/ old_fanout" not in text


def test_latency_vs_rate_plot_from_the_medians(tmp_path: Path) -> None:
    median = {f"{r}/s S=100 p99 ms": r / 10 for r in (50, 500, 5000)}
    median["5000/s S=100 kept up"] = 0.0
    records = {"grpc_latency": {**_record("conn", **median), "runs": [{"_detail": {}}]},
               "nats_latency": {**_record("conn", "grpc_latency", **median),
                                "runs": [{"_detail": {}}]}}
    made = plot(records, tmp_path)
    assert tmp_path / "latency_vs_rate.png" in made
    assert (tmp_path / "latency_vs_rate.png").stat().st_size > 1000
    # the curve compares systems in the layout all of them ran: a multiplexed record
    # alone draws nothing
    only_mux = {"grpc_latency_mux": {**_record("mux", **median), "runs": [{"_detail": {}}]}}
    assert tmp_path / "latency_vs_rate.png" not in plot(only_mux, tmp_path)


def test_cdf_points_keep_the_tail_and_plot_from_the_record(tmp_path: Path) -> None:
    values = [float(i) for i in range(1, 10_001)]  # 1..10000 ms
    cdf = cdf_points(values, points=100)
    assert len(cdf) <= 103
    assert [9901.0, 0.9901] in cdf  # the 99th percentile rank survives downsampling
    assert [9991.0, 0.9991] in cdf
    assert cdf[-1] == [10000.0, 1.0]
    record = {"scenario": "grpc_latency", "runs": [{"_detail": {"latency_cdf_ms": cdf}}],
              "median": {}}
    made = plot({"grpc_latency": record}, tmp_path)
    assert tmp_path / "latency_cdf.png" in made
    assert (tmp_path / "latency_cdf.png").stat().st_size > 1000


_no_server = grpc_available()


@pytest.mark.skipif(_no_server is not None, reason=str(_no_server))
def test_grpc_layouts_and_phases_over_loopback() -> None:
    phases = [{"rate": 2000, "events": 100}, {"rate": None, "events": 300}]
    conn = net_run("grpc", 4, phases=phases, layout="conn", latency=True, deadline=25)
    assert conn["server_connections"] == 4  # one TCP connection per subscriber
    first, second = conn["phases"]
    assert (first["published"], first["delivered"], first["lost"]) == (100, 400, 0)
    assert (second["published"], second["delivered"], second["lost"]) == (300, 1200, 0)
    # each phase's latencies are its own (the phase travels in the payload)
    assert (first["latency_samples"], second["latency_samples"]) == (400, 1200)
    assert first["rate"] == 2000 and second["rate"] is None
    assert set(first["cpu_s"]) >= {"server", "pub", "sub0", "sub1"}
    mux = net_run("grpc", 4, 200, layout="mux", deadline=25)
    assert mux["server_connections"] == 2  # one per subscriber process
    assert (mux["delivered"], mux["lost"]) == (800, 0)


def test_floor_relays_every_event_to_the_same_grpc_clients() -> None:
    """The grpc_floor scenario's relay: the benchmark's own gRPC subscribers and publisher,
    one connection per subscriber, every event delivered once to each, latencies kept."""
    r = net_run("floor", 3, phases=[{"rate": 1000, "events": 60}], latency=True, deadline=25)
    assert r["server_connections"] == 3
    assert (r["published"], r["delivered"], r["lost"], r["publish_errors"]) == (60, 180, 0, 0)
    assert r["latency_samples"] == 180
    assert r["cpu_s"]["server"] > 0


@pytest.mark.skipif(_no_server is not None, reason=str(_no_server))
def test_grpc_churn_kills_clients_mid_subscription_and_gauges_return_to_zero() -> None:
    result = grpc_churn_run(60, lanes=2, kills_per_lane=1, hold=10, warmup=20, deadline=25)
    assert result["cycles"] == 60
    assert sum(result["cycles_by_kind"].values()) == 60
    assert all(n > 0 for n in result["cycles_by_kind"].values())  # every kind of cycle ran
    assert result["kills"] == 2
    assert result["worker_processes"] == 4  # each killed worker was replaced
    assert result["min_live_at_kill"] >= 10  # the server held them when the client died
    assert result["subscriptions_left"] == 0
    assert result["subscribers_left"] == 0
    assert result["rss_base"] > 0 and result["rss_after"] > 0
    assert result["cpu_s"]["server"] > 0


@pytest.mark.skipif(_no_server is not None, reason=str(_no_server))
def test_grpc_idle_holds_subscriptions_through_heartbeats() -> None:
    # heartbeat 0.5 s, 3 missed allowed: a client that did not Ack would be evicted within
    # the 0.7 s settle + 1.5 s window, so "0 evicted" means the Acks worked
    result = grpc_idle_run(4, 5, procs=2, heartbeat=0.5, idle_seconds=1.5, deadline=25)
    assert result["subscriptions_held"] == 20
    assert result["subscriptions_after_idle"] == 20
    assert result["evicted"] == 0
    assert result["ended_seen_by_clients"] == 0
    assert result["heartbeats_seen_by_clients"] >= 4 * 2  # every stream, >= 2 rounds
    assert result["rss_held"] > result["rss_base"] > 0
    assert result["heartbeat_cpu_s_per_s"] >= 0
    assert result["subscriptions_left"] == 0


@pytest.mark.skipif(_no_server is not None, reason=str(_no_server))
def test_hostile_abuse_records_what_the_abuser_got_and_what_the_others_saw() -> None:
    # garbage on every method: every call is refused one way or another, and the run
    # must record each refusal rather than fall over
    r = abuse_run("garbage_bytes", full=False)
    codes = r["abuser"][0]["codes"]
    assert len(codes) == len(GARBAGE_METHODS)
    assert all(code and code != "OK" for code in codes.values())
    assert r["server_exit"] is None
    for phase in ("calm", "during"):
        fig = r[phase]
        assert fig["published"] > 0  # the steady load ran through both phases
        # every healthy delivery is accounted for: received or lost
        assert fig["delivered"] + fig["lost"] == fig["published"] * HEALTHY
        assert fig["latency_samples"] == fig["delivered"]
    assert r["lost"] == r["calm"]["lost"] + r["during"]["lost"]
    for series in ("publish", "health_tcp", "health_unix", "health_new_conn"):
        assert r["probe"][series]["abuse"]["calls"] > 0
    assert r["rss"]["abuse_peak"] > 0 and r["rss"]["bound"] > r["rss"]["calm_peak"] > 0
    assert r["cpu_s"]["abuse"]["server"] > 0 and "abuser0" in r["cpu_s"]["abuse"]
    # the abusive process was loaded before the calm phase (and idle through it)
    assert "abuser0" in r["cpu_s"]["calm"]
    # how long the server's loop ran and waited for a CPU, and the healthy clients waited,
    # phase by phase (the loop runs a good part of each second under the steady load)
    waits = cpu_waits(r)
    assert all(waits[who][phase] is not None and waits[who][phase] >= 0  # type: ignore[operator]
               for who in waits for phase in ("calm", "abuse"))
    assert 100 < waits["loop_ran"]["calm"] <= 1000  # type: ignore[operator]
    assert "abuser0" in r["cpu_wait_s"]["abuse"]
    table = hostile_report({"layout": "mux", "runs": [{"_detail": {"garbage_bytes": r}}]})
    assert "| garbage_bytes |" in table and "server loop ran + waited" in table


def test_the_control_run_is_reported_beside_the_abuses_not_counted_among_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the figures of a run, as abuse_run returns them, minus what the counting ignores
    def fake_run(name: str, full: bool) -> dict[str, Any]:
        ok = name != "huge_batch"
        calm = {"latency_ms": {"p99": 6.0}}
        probe = {s: {"abuse": {"p99": 5.0, "max": 9.0}}
                 for s in ("publish", "health_tcp", "health_unix", "health_new_conn")}
        return {"abuse": name, "control": name == "nothing", "got": "x", "calm": calm,
                "during": {"latency_ms": {"p99": 6.0 if ok else 30.0}},
                "p99_ratio": 1.0 if ok else 5.0, "lost": 0, "healthy_ended": 0,
                "probe": probe, "probe_p99_ms": {k: 5.0 for k in probe},
                "probe_within_target": True,
                "rss": {"calm_peak": 1, "abuse_peak": 2, "bound": 3}, "within_target": ok}

    monkeypatch.setattr(bench._hostile, "abuse_run", fake_run)
    out = grpc_hostile(True, ["nothing", "huge_batch", "garbage_bytes"])
    assert out["abuses run"] == 2  # the control is not an abuse
    assert out["abuses within target"] == 1
    assert out["nothing p99 ratio"] == 1.0  # but its figures are there
    table = hostile_report({"layout": "mux", "runs": [out]})
    assert "| nothing |" in table and "control (would pass)" in table


def test_cpu_wait_counts_the_time_a_process_was_runnable_but_not_running() -> None:
    # three processes spinning on one CPU, 0.4 s of CPU each: each waits while the other
    # two run, about 0.8 s (its CPU time would be 0.4)
    spin = ("import os, sys, time\n"
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "end = time.process_time() + 0.4\n"
            "while time.process_time() < end: pass\n"
            "print('spun', flush=True); sys.stdin.read()")
    procs = [subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "spun\n"
        waits = [cpu_wait_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.communicate()  # reaped, its pipes closed
    assert all(w is not None for w in waits)
    assert sum(w for w in waits if w is not None) > 1.6  # about 2.4; CPU time is 1.2
    assert cpu_wait_seconds(procs[0].pid) is None  # gone
    assert cpu_wait_seconds(os.getpid()) is not None


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


def test_log_backend_setups_over_loopback() -> None:
    """The log scenarios' pieces: our server on the jetstream log of a 1-node NATS (ack
    round trips and a load through net_run), and the JetStream peer (ordered push
    consumers, pipelined js.publish_async)."""
    _need_peer("nats-server")
    from bench._logs import SETUPS, _run_setup

    phases = [{"rate": None, "events": 200}, {"rate": 500, "events": 100}]
    for label in ("jetstream 1 node", "js 1 node"):
        setup = next(s for s in SETUPS if s.label == label)
        result = _run_setup(setup, subscribers=3, phases=phases, acks=20, latency=True)
        assert result["ack_ms"]["p50"] > 0, label
        unpaced, paced = result["run"]["phases"]
        assert (unpaced["published"], unpaced["delivered"]) == (200, 600), label
        assert (paced["published"], paced["delivered"]) == (100, 300), label
        assert paced["latency_ms"]["p50"] > 0, label

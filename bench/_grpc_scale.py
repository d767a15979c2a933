"""Scenarios 6 and 7 over gRPC against the real server process: subscription churn with
abrupt client kills (:func:`grpc_churn_run`) and idle subscriptions at scale
(:func:`grpc_idle_run`). Server RSS is ``VmRSS`` from ``/proc/PID/status``, server CPU is
user+system from ``/proc/PID/stat``, the subscription gauges come from ``/metrics``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench._net import split
from bench._proc import Child, ProcessGroup, cpu_seconds, vmrss_bytes
from bench._servers import GrpcServer, scrape_metrics, start_grpc_server

__all__ = ["grpc_churn_run", "grpc_idle_run", "wait_gauges"]

# Retention is bounded so that retained events are not mistaken for a leak.
CHURN_SERVER = {"defaults": {"max_subscriptions": 20000, "retention": {"max_events": 100}}}


def wait_gauges(metrics: str, want: int, timeout: float) -> tuple[dict[str, float], float]:
    """Poll ``/metrics`` until ``broadcaster_subscriptions`` and the sum of
    ``broadcaster_subscribers`` over namespaces both equal *want*, for at most *timeout* s.

    :returns: the last scrape and the seconds it took (the caller checks the values)
    """
    start = time.monotonic()
    while True:
        m = scrape_metrics(metrics)
        got = (m.get("broadcaster_subscriptions"), m.get("broadcaster_subscribers", 0.0))
        elapsed = time.monotonic() - start
        if got == (want, want) or elapsed > timeout:
            return m, elapsed
        time.sleep(0.05)


# -- scenario 6: churn -----------------------------------------------------------------


@dataclass
class _Lane:
    index: int
    remaining: int
    kills_left: int
    gen: int = 0
    child: Child | None = None


@dataclass
class _Tally:
    cycles: int = 0
    kills: int = 0
    held_killed: int = 0
    workers: int = 0
    worker_cpu_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    rss_peak: int = 0
    live_at_kill: list[float] = field(default_factory=list)


def _churn_phase(group: ProcessGroup, server: GrpcServer, cycles: int, lanes: int,
                 kills_per_lane: int, hold: int, deadline: float, tag: int) -> _Tally:
    """*cycles* cycles over *lanes* concurrent worker processes; each lane's worker is
    SIGKILLed *kills_per_lane* times while holding *hold* subscriptions, and replaced by
    one that does the rest of the lane's cycles."""
    end = time.monotonic() + deadline
    tally = _Tally()

    def start(lane: _Lane) -> None:
        kill_at = lane.remaining // (lane.kills_left + 1) if lane.kills_left else None
        params = {"address": server.address, "cycles": lane.remaining, "kill_at": kill_at,
                  "hold": hold, "index": tag * 10_000 + lane.index * 100 + lane.gen}
        lane.child = group.python(f"churn{tag}.{lane.index}.{lane.gen}", "bench.churn_worker",
                                  params, max(5.0, end - time.monotonic()))
        lane.gen += 1
        tally.workers += 1

    active = [_Lane(i, n, kills_per_lane) for i, n in enumerate(split(cycles, lanes))]
    for lane in active:
        start(lane)
    while active:
        if time.monotonic() > end:
            raise TimeoutError(f"churn: {len(active)} lane(s) unfinished after {deadline} s")
        tally.rss_peak = max(tally.rss_peak, vmrss_bytes(server.child.pid))
        for lane in list(active):
            assert lane.child is not None
            msg = lane.child.poll("status", 0.02)
            if msg is None:
                continue
            tally.cycles += msg["done"]
            for kind, n in msg["counts"].items():
                tally.counts[kind] = tally.counts.get(kind, 0) + n
            lane.remaining -= msg["done"]
            if msg["status"] == "holding":
                live = scrape_metrics(server.metrics).get("broadcaster_subscriptions", 0.0)
                tally.live_at_kill.append(live)  # >= hold: the kill is mid-subscription
                lane.child.kill()  # SIGKILL while it holds subscriptions with events queued
                tally.kills += 1
                tally.held_killed += msg["held"]
                lane.kills_left -= 1
                if lane.remaining > 0:
                    start(lane)
                    continue
            else:
                tally.worker_cpu_s += msg["cpu_s"]
            active.remove(lane)
    return tally


def grpc_churn_run(cycles: int, *, lanes: int = 4, kills_per_lane: int = 1, hold: int = 20,
                   warmup: int | None = None, deadline: float = 120.0) -> dict[str, Any]:
    """Scenario 6 over gRPC: a warm-up phase (*warmup* cycles, one kill per lane), the
    baseline RSS, then *cycles* cycles with *kills_per_lane* kills per lane; then the
    subscription gauges must return to 0 and RSS is compared with the baseline.

    :param lanes: worker processes running at once
    :param hold: subscriptions a worker holds (on 2 streams) when it is SIGKILLed
    :param deadline: bound of each phase, seconds
    :raises TimeoutError: if a phase does not finish within *deadline*
    """
    warmup = warmup if warmup is not None else max(100, cycles // 5)
    with ProcessGroup() as group:
        server = start_grpc_server(group, 2 * deadline + 60, config=CHURN_SERVER)
        pid = server.child.pid
        rss_start = vmrss_bytes(pid)
        warm = _churn_phase(group, server, warmup, lanes, 1, hold, deadline, tag=1)
        wait_gauges(server.metrics, 0, 15.0)
        base = vmrss_bytes(pid)
        cpu0 = cpu_seconds(pid)
        started = time.monotonic()
        tally = _churn_phase(group, server, cycles, lanes, kills_per_lane, hold, deadline, tag=2)
        elapsed = time.monotonic() - started
        metrics, to_zero = wait_gauges(server.metrics, 0, 15.0)
        after = vmrss_bytes(pid)
        server_cpu = cpu_seconds(pid) - cpu0
    return {
        "cycles": tally.cycles, "held_then_killed": tally.held_killed, "kills": tally.kills,
        "cycles_by_kind": tally.counts, "worker_processes": tally.workers,
        "min_live_at_kill": min(tally.live_at_kill, default=None),
        "warmup_cycles": warm.cycles, "warmup_kills": warm.kills,
        "subscriptions_left": metrics.get("broadcaster_subscriptions"),
        "subscribers_left": metrics.get("broadcaster_subscribers", 0.0),
        "seconds_to_zero": round(to_zero, 3),
        "rss_start": rss_start, "rss_base": base, "rss_after": after, "rss_peak": tally.rss_peak,
        "rss_growth_pct": 100.0 * (after - base) / base,
        "elapsed_s": elapsed, "cycles_per_s": tally.cycles / elapsed,
        "cpu_s": {"server": round(server_cpu, 3), "workers": round(tally.worker_cpu_s, 3)},
    }


# -- scenario 7: idle subscriptions ------------------------------------------------------


def _idle_server(total: int, per_stream: int, heartbeat: float) -> dict[str, Any]:
    return {
        "server": {"max_subscriptions_per_stream": max(1000, per_stream)},
        "hub": {"heartbeat_interval": heartbeat, "max_missed_heartbeats": 3},
        "defaults": {"max_subscriptions": total + 1000},
    }


def _hold(group: ProcessGroup, server: GrpcServer, name: str, streams: int, per_stream: int,
          procs: int, deadline: float) -> list[Child]:
    workers = []
    for i, n in enumerate(split(streams, procs)):
        workers.append(group.python(f"{name}{i}", "bench.idle_worker", {
            "address": server.address, "streams": n, "per_stream": per_stream, "index": i,
        }, deadline))
    for w in workers:
        w.wait_for("ready", deadline)
    return workers


def _release(workers: list[Child]) -> list[dict[str, Any]]:
    for w in workers:
        w.send("stop")
    return [w.wait_for("result", 30)["result"] for w in workers]


def grpc_idle_run(streams: int, per_stream: int, *, procs: int = 2, heartbeat: float = 1.0,
                  idle_seconds: float = 3.0, deadline: float = 90.0) -> dict[str, Any]:
    """Scenario 7 over gRPC, one layout: *streams* x *per_stream* idle subscriptions held by
    *procs* client processes against a fresh server (so that one layout's freed memory
    cannot flatter the next). Baseline RSS after a warm-up; server CPU over *idle_seconds*
    with no subscriptions, then with all of them (clients answer every Heartbeat).

    :param heartbeat: the server's heartbeat_interval, seconds
    :raises TimeoutError: if clients do not come up within *deadline*
    """
    total = streams * per_stream
    with ProcessGroup() as group:
        server = start_grpc_server(group, deadline + 60,
                                   config=_idle_server(total, per_stream, heartbeat))
        pid = server.child.pid
        warm = _hold(group, server, "warm", min(streams, 20), min(per_stream, 10), 1, 30)
        _release(warm)
        wait_gauges(server.metrics, 0, 15.0)
        base = vmrss_bytes(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle_seconds)  # measurement window: the server idle with nothing held
        empty_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        started = time.monotonic()
        workers = _hold(group, server, "idle", streams, per_stream, procs, deadline)
        setup_s = time.monotonic() - started
        held_gauges, _ = wait_gauges(server.metrics, total, 15.0)
        time.sleep(heartbeat + 0.2)  # let one heartbeat round go by before measuring
        rss_held = vmrss_bytes(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle_seconds)  # measurement window
        idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        rss_after = vmrss_bytes(pid)
        still = scrape_metrics(server.metrics)
        results = _release(workers)
        gone, to_zero = wait_gauges(server.metrics, 0, 15.0)
    return {
        "streams": streams, "per_stream": per_stream, "subscriptions": total,
        "client_processes": len(results), "heartbeat_interval_s": heartbeat,
        "idle_seconds": idle_seconds, "setup_s": round(setup_s, 3),
        "subscriptions_held": held_gauges.get("broadcaster_subscriptions"),
        "subscriptions_after_idle": still.get("broadcaster_subscriptions"),
        "evicted": still.get("broadcaster_subscribers_evicted_total", 0.0),
        "ended_seen_by_clients": sum(r["ended"] for r in results),
        "heartbeats_seen_by_clients": sum(r["heartbeats"] for r in results),
        "rss_base": base, "rss_held": rss_held, "rss_after": rss_after,
        "bytes_per_subscription": (rss_after - base) / total,
        "heartbeat_cpu_s_per_s": idle_cpu, "empty_server_cpu_s_per_s": empty_cpu,
        "subscriptions_left": gone.get("broadcaster_subscriptions"),
        "seconds_to_zero": round(to_zero, 3),
        "cpu_s": {"clients": round(sum(r["cpu_s"] for r in results), 3)},
    }

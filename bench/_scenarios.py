"""The scenarios: each run returns named figures; the harness takes medians over runs
and checks the target on the medians."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import _kubelet
from bench._grpc_scale import grpc_churn_run, grpc_idle_run
from bench._net import net_run
from bench._proc import ProcessGroup

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    """A scenario: *run(full)* does one run and returns ``{figure: value}`` plus details
    under ``"_detail"``; *check(medians)* returns (verdict text, passed or None)."""

    name: str
    title: str
    target: str
    run: Callable[[bool], dict[str, Any]]
    check: Callable[[dict[str, float]], tuple[str, bool | None]]
    needs_grpc: bool = False
    peer_of: str | None = None


def core(params: dict[str, Any], deadline: float = 90.0) -> dict[str, Any]:
    """Run one core scenario in its own process; its result plus its CPU seconds."""
    with ProcessGroup() as group:
        child = group.python("core", "bench.core_worker", params, deadline)
        result = child.wait_for("result", deadline)["result"]
        result["cpu_s"] = {"core": round(child.cpu(), 3)}
    return result


def _sizes(full: bool) -> list[int]:
    return [1, 10, 100, 1000] if full else [1, 10, 100]


# -- core alone ------------------------------------------------------------------------

def core_fanout(full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"_detail": {}}
    for backend in ("asyncio", "trio"):
        for s in _sizes(full):
            events = max(1000, min(300_000, (2_000_000 if full else 300_000) // s))
            r = core({"scenario": "fanout", "backend": backend, "subscribers": s,
                      "events": events})
            out[f"{backend} S={s}"] = r["deliveries_per_s"]
            out[f"{backend} S={s} lost"] = r["lost"]
            out["_detail"][f"{backend} S={s}"] = r
    return out


def core_publish_cost(full: bool) -> dict[str, Any]:
    secs = 3.0 if full else 1.0
    one = core({"scenario": "publish_cost", "subscribers": 1, "seconds": secs})
    many = core({"scenario": "publish_cost", "subscribers": 1000, "seconds": secs})
    return {"S=1 publish/s": one["publish_per_s"], "S=1000 publish/s": many["publish_per_s"],
            "ratio": many["publish_per_s"] / one["publish_per_s"],
            "S=1000 wall publish/s": many["wall_publish_per_s"],
            "S=1000 deliveries/s": many["deliveries_per_s"],
            "_detail": {"S=1": one, "S=1000": many}}


def _core_lat(full: bool, **extra: Any) -> dict[str, Any]:
    return core({"scenario": "latency", "subscribers": 100, "rate": 5000,
                 "seconds": 5.0 if full else 1.0, **extra})


def core_latency_isolation(full: bool) -> dict[str, Any]:
    base = _core_lat(full)
    slow = _core_lat(full, stalled=True)
    return {"p50 ms": base["latency_ms"]["p50"], "p99 ms": base["latency_ms"]["p99"],
            "p99.9 ms": base["latency_ms"]["p99.9"],
            "p99 ms with stalled": slow["latency_ms"]["p99"],
            "isolation ratio": slow["latency_ms"]["p99"] / base["latency_ms"]["p99"],
            "lost": base["lost"] + slow["lost"], "_detail": {"alone": base, "stalled": slow}}


def core_fairness(full: bool) -> dict[str, Any]:
    params = {"subscribers": 10, "rate": 1000, "seconds": 5.0 if full else 1.0}
    alone = core({"scenario": "latency", **params})
    flood = core({"scenario": "latency", **params, "flood": True})
    return {"B p99 ms alone": alone["latency_ms"]["p99"],
            "B p99 ms flooded": flood["latency_ms"]["p99"],
            "fairness ratio": flood["latency_ms"]["p99"] / alone["latency_ms"]["p99"],
            "A flood events": flood["flood_events"], "_detail": {"alone": alone, "flood": flood}}


def core_churn(full: bool) -> dict[str, Any]:
    r = core({"scenario": "churn", "cycles": 10_000 if full else 2_000})
    return {"subscriptions left": r["subscriptions_left"], "RSS growth %": r["rss_growth_pct"],
            "_detail": r}


def core_idle(full: bool) -> dict[str, Any]:
    r = core({"scenario": "idle", "subscriptions": 10_000 if full else 2_000,
              "heartbeat_interval": 1.0, "idle_seconds": 3.0 if full else 1.0})
    return {"RSS bytes/subscription": r["bytes_per_subscription"],
            "heartbeat CPU s/s": r["heartbeat_cpu_s_per_s"], "_detail": r}


# -- over the network -----------------------------------------------------------------

LOSSLESS_HUB = {"defaults": {"max_subscriptions": 20000, "retention": {"max_events": 200000}}}


def _fanout(system: str) -> Callable[[bool], dict[str, Any]]:
    def run(full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"_detail": {}}
        for s in _sizes(full):
            total = 1_000_000 if full else 100_000
            if system == "redis":
                total //= 5  # redis-py tops out near 40k deliveries/s: keep runs bounded
            events = max(200, total // s)
            procs = 1 if s == 1 else (4 if s >= 1000 else 2)
            r = net_run(system, s, events, procs=procs, deadline=120 if full else 40,
                        hub=LOSSLESS_HUB)
            out[f"S={s}"] = r["deliveries_per_s"]
            out[f"S={s} lost"] = r["lost"]
            out["_detail"][f"S={s}"] = r
        return out
    return run


def _latency(system: str) -> Callable[[bool], dict[str, Any]]:
    def run(full: bool) -> dict[str, Any]:
        seconds = 5.0 if full else 0.5
        if system == "redis":
            seconds /= 5  # redis-py cannot keep up with 500k deliveries/s: bound the run
        r = net_run(system, 100, int(5000 * seconds), rate=5000, latency=True,
                    deadline=120 if full else 40, hub=LOSSLESS_HUB)
        lat = r["latency_ms"]
        return {"p50 ms": lat.get("p50"), "p99 ms": lat.get("p99"),
                "p99.9 ms": lat.get("p99.9"), "lost": r["lost"], "_detail": r}
    return run


def grpc_publish_cost(full: bool) -> dict[str, Any]:
    """Publish rate with 1 subscriber, then with 1,000 idle-but-healthy ones more (same
    namespace, a filter nothing matches, heartbeats acked): the target's scenario. Also,
    for information, 1,000 subscribers that each receive every event (the server then
    delivers 1,000 times what it ingests, on the same two cores)."""
    events = 200_000 if full else 20_000
    many = 1000 if full else 100
    one = net_run("grpc", 1, events, procs=1, policy="drop_newest", hub=LOSSLESS_HUB)
    idle = net_run("grpc", 1, events, procs=1, idle=many, policy="drop_newest",
                   hub=LOSSLESS_HUB)
    reading = net_run("grpc", many, events, procs=2, streams=4, policy="drop_newest",
                      hub=LOSSLESS_HUB)
    return {"S=1 publish/s": one["publish_per_s"],
            f"S=1+{many} idle publish/s": idle["publish_per_s"],
            "ratio": idle["publish_per_s"] / one["publish_per_s"],
            f"S={many} reading publish/s": reading["publish_per_s"],
            "reading ratio": reading["publish_per_s"] / one["publish_per_s"],
            "_detail": {"S=1": one, "idle": idle, "reading": reading}}


def grpc_isolation(full: bool) -> dict[str, Any]:
    seconds = 5.0 if full else 0.5
    kw = {"rate": 5000, "latency": True, "hub": LOSSLESS_HUB, "policy": "drop_newest"}
    base = net_run("grpc", 100, int(5000 * seconds), **kw)
    slow = net_run("grpc", 100, int(5000 * seconds), stalled=True, **kw)
    return {"p99 ms": base["latency_ms"]["p99"],
            "p99 ms with stalled": slow["latency_ms"]["p99"],
            "isolation ratio": slow["latency_ms"]["p99"] / base["latency_ms"]["p99"],
            "lost": base["lost"] + slow["lost"], "_detail": {"alone": base, "stalled": slow}}


def grpc_fairness(full: bool) -> dict[str, Any]:
    seconds = 5.0 if full else 0.5
    kw = {"rate": 1000, "latency": True, "hub": LOSSLESS_HUB, "procs": 1}
    alone = net_run("grpc", 10, int(1000 * seconds), **kw)
    flood = net_run("grpc", 10, int(1000 * seconds), flood=True, **kw)
    return {"B p99 ms alone": alone["latency_ms"]["p99"],
            "B p99 ms flooded": flood["latency_ms"]["p99"],
            "fairness ratio": flood["latency_ms"]["p99"] / alone["latency_ms"]["p99"],
            "_detail": {"alone": alone, "flood": flood}}


def grpc_churn(full: bool) -> dict[str, Any]:
    r = grpc_churn_run(10_000 if full else 1_000, lanes=4, kills_per_lane=2 if full else 1,
                       deadline=300 if full else 60)
    return {"cycles": r["cycles"], "kills": r["kills"],
            "subscriptions left": r["subscriptions_left"],
            "subscribers left": r["subscribers_left"], "RSS growth %": r["rss_growth_pct"],
            "seconds to zero": r["seconds_to_zero"], "cycles/s": r["cycles_per_s"],
            "_detail": r}


IDLE_HEARTBEAT = 1.0  # the server's heartbeat_interval in grpc_idle, seconds


def grpc_idle(full: bool) -> dict[str, Any]:
    n = 10_000 if full else 1_000
    kw = {"heartbeat": IDLE_HEARTBEAT, "idle_seconds": 10.0 if full else 3.0,
          "deadline": 180 if full else 60}
    few = grpc_idle_run(10, n // 10, procs=2, **kw)
    many = grpc_idle_run(n // 10, 10, procs=2 if not full else 4, **kw)
    out: dict[str, Any] = {}
    for label, r in (("few streams", few), ("many streams", many)):
        out[f"{label} RSS bytes/subscription"] = r["bytes_per_subscription"]
        out[f"{label} heartbeat CPU s/s"] = r["heartbeat_cpu_s_per_s"]
        out[f"{label} evicted"] = r["evicted"] + r["ended_seen_by_clients"]
    out["empty server CPU s/s"] = (few["empty_server_cpu_s_per_s"]
                                   + many["empty_server_cpu_s_per_s"]) / 2
    out["_detail"] = {f"{few['streams']}x{few['per_stream']}": few,
                      f"{many['streams']}x{many['per_stream']}": many,
                      "cpu_s": {"clients (few)": few["cpu_s"]["clients"],
                                "clients (many)": many["cpu_s"]["clients"]}}
    return out


# -- verdicts ------------------------------------------------------------------------

def _at_least(key: str, bound: float) -> Callable[[dict[str, float]], tuple[str, bool | None]]:
    def check(m: dict[str, float]) -> tuple[str, bool | None]:
        v = m.get(key)
        if v is None:
            return "no figure", None
        return f"{key} = {v:,.3g} (>= {bound:,.3g})", v >= bound
    return check


def _at_most(key: str, bound: float) -> Callable[[dict[str, float]], tuple[str, bool | None]]:
    def check(m: dict[str, float]) -> tuple[str, bool | None]:
        v = m.get(key)
        if v is None:
            return "no figure", None
        return f"{key} = {v:,.3g} (<= {bound:,.3g})", v <= bound
    return check


def _churn_check(m: dict[str, float]) -> tuple[str, bool | None]:
    left, growth = m["subscriptions left"], m["RSS growth %"]
    return f"{left:g} left, RSS {growth:+.1f} %", left == 0 and growth <= 10.0


def _grpc_churn_check(m: dict[str, float]) -> tuple[str, bool | None]:
    left = m["subscriptions left"] + m["subscribers left"]
    growth = m["RSS growth %"]
    return (f"{m['cycles']:g} cycles, {m['kills']:g} kills: {left:g} left, RSS {growth:+.1f} %",
            left == 0 and growth <= 10.0)


def _grpc_idle_check(m: dict[str, float]) -> tuple[str, bool | None]:
    worst = max(m["few streams RSS bytes/subscription"], m["many streams RSS bytes/subscription"])
    evicted = m["few streams evicted"] + m["many streams evicted"]
    return (f"worst RSS {worst / 1024:.1f} KiB/subscription (<= 20); {evicted:g} evicted",
            worst <= 20 * 1024 and evicted == 0)


def _lossless(key: str, bound: float) -> Callable[[dict[str, float]], tuple[str, bool | None]]:
    base = _at_least(key, bound)

    def check(m: dict[str, float]) -> tuple[str, bool | None]:
        text, ok = base(m)
        lost = sum(v for k, v in m.items() if k.endswith("lost"))
        return f"{text}; lost {lost:g}", (ok and lost == 0) if ok is not None else None
    return check


def _info(m: dict[str, float]) -> tuple[str, bool | None]:
    return "reference figure (no target)", None


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("core_fanout", "Core fan-out, in-process (asyncio and trio)",
             ">= 1M deliveries/s at S=100, 0 lost", core_fanout,
             _lossless("asyncio S=100", 1e6)),
    Scenario("core_publish_cost", "Core publish rate, S=1000 vs S=1 reading subscribers",
             "ratio >= 0.5", core_publish_cost, _at_least("ratio", 0.5)),
    Scenario("core_latency_isolation", "Core latency 5,000 ev/s S=100, +1 stalled subscriber",
             "p99 < 5 ms; stalled/alone p99 <= 1.2", core_latency_isolation,
             lambda m: (f"p99 {m['p99 ms']:.2f} ms, ratio {m['isolation ratio']:.2f}",
                        m["p99 ms"] < 5 and m["isolation ratio"] <= 1.2)),
    Scenario("core_fairness", "Core namespace fairness: B at 1,000 ev/s, A flooded",
             "B p99 flooded/alone <= 2", core_fairness, _at_most("fairness ratio", 2.0)),
    Scenario("core_churn", "Core churn: subscribe/cancel cycles (10% cancelled mid-wait)",
             "0 left, RSS within 10 %", core_churn, _churn_check),
    Scenario("core_idle", "Core idle subscriptions (one task each)",
             "<= 20 KiB RSS per subscription", core_idle,
             _at_most("RSS bytes/subscription", 20 * 1024)),
    Scenario("grpc_fanout", "gRPC fan-out, 1 publisher, S subscribers, 200 B, lossless",
             ">= 1M deliveries/s at S=100, >= NATS and Redis, 0 lost", _fanout("grpc"),
             _lossless("S=100", 1e6), needs_grpc=True),
    Scenario("nats_fanout", "NATS fan-out (peer)", "reference for grpc_fanout",
             _fanout("nats"), _info, peer_of="grpc_fanout"),
    Scenario("redis_fanout", "Redis pub/sub fan-out (peer)", "reference for grpc_fanout",
             _fanout("redis"), _info, peer_of="grpc_fanout"),
    Scenario("grpc_latency", "gRPC latency at 5,000 ev/s, S=100", "p99 < 5 ms",
             _latency("grpc"), lambda m: _at_most("p99 ms", 5.0)(m), needs_grpc=True),
    Scenario("nats_latency", "NATS latency at 5,000 ev/s, S=100 (peer)",
             "reference for grpc_latency", _latency("nats"), _info, peer_of="grpc_latency"),
    Scenario("redis_latency", "Redis latency at 5,000 ev/s, S=100 (peer)",
             "reference for grpc_latency", _latency("redis"), _info, peer_of="grpc_latency"),
    Scenario("grpc_publish_cost", "gRPC publish rate, S=1 vs +1,000 idle-but-healthy "
             "subscribers (and vs 1,000 reading ones)", "ratio >= 0.5",
             grpc_publish_cost, _at_least("ratio", 0.5), needs_grpc=True),
    Scenario("grpc_isolation", "gRPC slow-subscriber isolation at 5,000 ev/s, S=100",
             "p99 with stalled <= 1.2x without", grpc_isolation,
             _at_most("isolation ratio", 1.2), needs_grpc=True),
    Scenario("grpc_fairness", "gRPC namespace fairness", "B p99 flooded <= 2x alone",
             grpc_fairness, _at_most("fairness ratio", 2.0), needs_grpc=True),
    Scenario("grpc_churn", "gRPC churn: subscribe/unsubscribe cycles, clients SIGKILLed "
             "mid-subscription", "gauges back to 0, RSS within 10 % of warm baseline",
             grpc_churn, _grpc_churn_check, needs_grpc=True),
    Scenario("grpc_kubelet", "gRPC kubelet-like watchers: 100 streams, each "
             "topic==\"/tasks/exit\",event.container_id==<own id>, shim publishing "
             "create/start/exit of 1,000 containers", "publish rate >= 0.5x unfiltered S=1, "
             "exact deliveries", _kubelet.grpc_kubelet, _kubelet.kubelet_check,
             needs_grpc=True),
    Scenario("grpc_idle", f"gRPC idle subscriptions, few vs many streams, heartbeat "
             f"{IDLE_HEARTBEAT:g} s", "<= 20 KiB RSS per subscription, 0 evicted",
             grpc_idle, _grpc_idle_check, needs_grpc=True),
]}

QUICK = ["core_fanout", "core_publish_cost", "core_latency_isolation", "core_fairness",
         "core_churn", "core_idle", "grpc_fanout", "nats_fanout", "redis_fanout",
         "grpc_latency", "nats_latency", "grpc_churn", "grpc_idle"]


if __name__ == "__main__":  # debugging aid: python -m bench._scenarios NAME
    print(json.dumps(SCENARIOS[sys.argv[1]].run(False), indent=1, default=str))

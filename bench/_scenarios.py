"""The scenarios: each run returns named figures; the harness takes medians over runs
and checks the target on the medians."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _kubelet, _logs
from bench._grpc_scale import grpc_churn_run, grpc_idle_run
from bench._hostile import HOSTILE_LAYOUT, grpc_hostile, hostile_check, hostile_report
from bench._net import net_run
from bench._proc import ProcessGroup, cpu_seconds
from bench._servers import start_grpc_server, start_jetstream

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
    #: the scenario whose figures this peer's are compared with (same layout only)
    peer_of: str | None = None
    #: subscriber layout of a network scenario: "conn" or "mux" (bench._net.LAYOUTS)
    layout: str | None = None
    #: runs per scenario when --runs is not given (default: 3 with --full, 1 with --quick)
    runs: int | None = None
    #: a markdown section for summary.md from the scenario's record (optional)
    report: Callable[[dict[str, Any]], str] | None = None


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

#: Offered rates (events/s) of the latency scenarios at S=10, and at S=100 the rates of
#: the p99-against-offered-rate curve (latency_vs_rate.png); both include 50, 500, 5,000.
LATENCY_RATES = (50, 500, 5000)
SWEEP_RATES = (50, 200, 500, 1000, 2000, 5000)
#: Deliveries one phase may ask of a system that cannot keep up at the highest rates, so
#: that its run stays bounded (it then drains a backlog; the report marks such points).
DELIVERY_CAP = {"grpc": None, "floor": None, "nats": 1_000_000, "redis": 300_000}


def _fanout(system: str, layout: str = "conn") -> Callable[[bool], dict[str, Any]]:
    def run(full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"_detail": {}}
        for s in _sizes(full):
            total = 1_000_000 if full else 100_000
            if system == "redis":
                total //= 5  # redis-py tops out near 40k deliveries/s: keep runs bounded
            # S=1 is bounded by one subscriber process: 200k events are enough (and stay
            # under nats-server's 64 MiB slow-consumer limit while the subscriber lags)
            events = max(200, min(total // s, 200_000 if full else 20_000))
            r = net_run(system, s, events, layout=layout, deadline=120 if full else 40,
                        hub=LOSSLESS_HUB)
            out[f"S={s}"] = r["deliveries_per_s"]
            out[f"S={s} lost"] = r["lost"]
            out[f"S={s} per server CPU-s"] = r["deliveries_per_server_cpu_s"]
            out["_detail"][f"S={s}"] = r
        return out
    return run


def _phase_events(system: str, rate: float, subscribers: int, seconds: float,
                  full: bool) -> int:
    events = max(50, int(rate * seconds))
    cap = DELIVERY_CAP[system]
    if cap is not None:
        cap = cap if full else cap // 5
        events = min(events, max(int(rate * 0.2), cap // subscribers))
    return events


def _latency(system: str, layout: str = "conn") -> Callable[[bool], dict[str, Any]]:
    """p50/p99/p99.9 at each offered rate: S=10 at LATENCY_RATES, S=100 at SWEEP_RATES
    (quick: S=100 at LATENCY_RATES), each S one server and one set of subscribers going
    through the rates in increasing order."""
    def run(full: bool) -> dict[str, Any]:
        seconds = 3.0 if full else 0.5
        plan = [(10, LATENCY_RATES), (100, SWEEP_RATES)] if full else [(100, LATENCY_RATES)]
        out: dict[str, Any] = {"_detail": {}}
        for s, rates in plan:
            phases = [{"rate": r, "events": _phase_events(system, r, s, seconds, full)}
                      for r in rates]
            res = net_run(system, s, phases=phases, latency=True, layout=layout,
                          deadline=240 if full else 60, hub=LOSSLESS_HUB)
            for rate, ph in zip(rates, res["phases"], strict=True):
                key = f"{rate}/s S={s}"
                lat = ph["latency_ms"]
                out[f"{key} p50 ms"] = lat.get("p50")
                out[f"{key} p99 ms"] = lat.get("p99")
                out[f"{key} p99.9 ms"] = lat.get("p99.9")
                out[f"{key} lost"] = ph["lost"]
                # kept up: received (first to last receipt) at >= 90 % of the offered
                # deliveries/s; otherwise a backlog grew and p99 grows with the run
                out[f"{key} kept up"] = float((ph["receive_rate"] or 0) >= 0.9 * rate * s)
                out[f"{key} server CPU %"] = 100 * ph["cpu_s"]["server"] / ph["elapsed_s"]
                if s == 100 and rate == 5000:
                    out["_detail"]["latency_cdf_ms"] = ph["latency_cdf_ms"]
            for ph in res["phases"]:
                del ph["latency_cdf_ms"]  # one CDF per run is kept (5,000/s, S=100)
            out["_detail"][f"S={s}"] = res
        return out
    return run


def grpc_floor(full: bool) -> dict[str, Any]:
    """The same clients against :mod:`bench.floor_worker`, a grpc.aio relay with no hub:
    fan-out at S=1 and S=100 and latency at S=100 (50, 500 and 5,000 ev/s), one
    connection and one Subscribe stream per subscriber, with the server's CPU per stream
    message. What any one-process grpc.aio server costs here: the floor under the
    ``grpc_fanout`` and ``grpc_latency`` figures."""
    out: dict[str, Any] = {"_detail": {}}
    for s in (1, 100):
        total = 1_000_000 if full else 100_000
        events = max(200, min(total // s, 200_000 if full else 20_000))
        r = net_run("floor", s, events, deadline=120 if full else 40)
        out[f"S={s}"] = r["deliveries_per_s"]
        out[f"S={s} lost"] = r["lost"]
        out[f"S={s} per server CPU-s"] = r["deliveries_per_server_cpu_s"]
        out["_detail"][f"fanout S={s}"] = r
    seconds = 3.0 if full else 0.5
    rates = LATENCY_RATES
    phases = [{"rate": r, "events": _phase_events("floor", r, 100, seconds, full)}
              for r in rates]
    res = net_run("floor", 100, phases=phases, latency=True, deadline=240 if full else 60)
    for rate, ph in zip(rates, res["phases"], strict=True):
        key = f"{rate}/s S=100"
        lat = ph["latency_ms"]
        out[f"{key} p50 ms"] = lat.get("p50")
        out[f"{key} p99 ms"] = lat.get("p99")
        out[f"{key} lost"] = ph["lost"]
        out[f"{key} server CPU %"] = 100 * ph["cpu_s"]["server"] / ph["elapsed_s"]
        # every event is its own stream message at the low rates: CPU per message
        out[f"{key} server CPU us/delivery"] = (
            1e6 * ph["cpu_s"]["server"] / ph["delivered"] if ph["delivered"] else None)
    for ph in res["phases"]:
        ph.pop("latency_cdf_ms", None)
    out["_detail"]["latency S=100"] = res
    return out


def grpc_workers(full: bool) -> dict[str, Any]:
    """``broadcaster serve --workers W`` (W = 1, then 2) on the jetstream log (one
    nats-server), one connection + stream per subscriber: fan-out at S=100, then latency
    at 50 and 500 ev/s x S=100 against the same server. Server CPU is the sum over its
    workers; the nats-server's is given apart."""
    out: dict[str, Any] = {"_detail": {}}
    total = 1_000_000 if full else 100_000
    seconds = 3.0 if full else 0.5
    for workers in (1, 2):
        with ProcessGroup() as group:
            nats, urls = start_jetstream(group, 1, 900)
            hub = {**LOSSLESS_HUB, "log": {"backend": "jetstream", "jetstream": {
                "servers": urls.split(",")}}}
            server = start_grpc_server(group, 900, config=hub, workers=workers)
            external = (server.child, server.address)
            nats0 = cpu_seconds(nats.pid)
            fan = net_run("grpc", 100, total // 100, deadline=120 if full else 40,
                          external=external)
            key = f"W={workers}"
            out[f"{key} S=100"] = fan["deliveries_per_s"]
            out[f"{key} S=100 lost"] = fan["lost"]
            out[f"{key} S=100 server CPU-s"] = fan["cpu_s"]["server"]
            phases = [{"rate": r, "events": max(50, int(r * seconds))} for r in (50, 500)]
            lat = net_run("grpc", 100, phases=phases, latency=True, external=external,
                          deadline=240 if full else 60)
            for ph in lat["phases"]:
                name = f"{key} {ph['rate']}/s S=100"
                out[f"{name} p50 ms"] = ph["latency_ms"].get("p50")
                out[f"{name} p99 ms"] = ph["latency_ms"].get("p99")
                out[f"{name} lost"] = ph["lost"]
                out[f"{name} server CPU %"] = 100 * ph["cpu_s"]["server"] / ph["elapsed_s"]
                ph.pop("latency_cdf_ms", None)
            out[f"{key} nats CPU-s"] = cpu_seconds(nats.pid) - nats0
            out["_detail"][key] = {"fanout": fan, "latency": lat}
    return out


def _ingest(system: str) -> Callable[[bool], dict[str, Any]]:
    """Events/s into the server from one publisher connection (100 events per write, 8
    writes unacknowledged, as in every scenario), S=1. The gRPC subscriber drops rather
    than blocks (drop_newest, 8,192 events), as NATS and Redis never slow a publisher
    for a subscriber: the figure is the server's ingest, not the subscriber's pace."""
    def run(full: bool) -> dict[str, Any]:
        events = 200_000 if full else 20_000
        r = net_run(system, 1, events, deadline=120 if full else 40, hub=LOSSLESS_HUB,
                    policy="drop_newest")
        cpu = r["cpu_s"]["server"]
        return {"events/s in": r["publish_per_s"],
                "server CPU us/event": 1e6 * cpu / r["published"] if cpu else None,
                "delivered %": 100.0 * r["delivered"] / max(1, r["expected"]),
                "_detail": r}
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
    reading = net_run("grpc", many, events, procs=2, layout="mux", streams=4,
                      policy="drop_newest", hub=LOSSLESS_HUB)
    return {"S=1 publish/s": one["publish_per_s"],
            f"S=1+{many} idle publish/s": idle["publish_per_s"],
            "ratio": idle["publish_per_s"] / one["publish_per_s"],
            f"S={many} reading publish/s": reading["publish_per_s"],
            "reading ratio": reading["publish_per_s"] / one["publish_per_s"],
            "_detail": {"S=1": one, "idle": idle, "reading": reading}}


def access_policy(rules: int, identity: str = "anonymous", namespace: str = "bench") -> str:
    """A policy file of *rules* allow and deny patterns over 20 identities, those that
    let *identity* publish and subscribe in *namespace* written last."""
    lines: list[str] = []
    written = 0
    for i in range(20):
        if written + 5 > rules - 4:
            break
        lines += [f'[identities."tenant-{i}"]',
                  f'publish = {{ allow = ["tenant-{i}.*", "shared-{i}"], '
                  f'deny = ["tenant-{i}.frozen"] }}',
                  f'subscribe = ["tenant-{i}.*", "shared-*"]', ""]
        written += 5
    filler = max(0, rules - written - 4)
    extra = ", ".join(f'"other-{j}-*"' for j in range(filler))
    lines += [f'[identities."{identity}"]',
              f'publish = {{ allow = [{extra}{", " if extra else ""}"{namespace}"], '
              f'deny = ["{namespace}-frozen"] }}',
              f'create = ["{namespace}"]', f'subscribe = ["{namespace}"]', ""]
    return "\n".join(lines)


def grpc_auth_cost(full: bool) -> dict[str, Any]:
    """Publish rate (one publisher, S=1, as grpc_publish_cost) with no access policy,
    then with a 100-rule policy (every event's namespace checked for ``publish``), then
    without again: the policy's rate against the mean of the two without."""
    events = 200_000 if full else 20_000
    folder = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    try:
        path = folder / "policy.toml"
        path.write_text(access_policy(100))
        secured = {**LOSSLESS_HUB, "security": {"policy_file": str(path)}}
        runs = [net_run("grpc", 1, events, procs=1, policy="drop_newest",
                        hub=secured if i == 1 else LOSSLESS_HUB) for i in range(3)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    without = (runs[0]["publish_per_s"] + runs[2]["publish_per_s"]) / 2
    return {"no policy publish/s": without,
            "100-rule policy publish/s": runs[1]["publish_per_s"],
            "ratio": runs[1]["publish_per_s"] / without,
            "_detail": {"none": runs[0], "policy": runs[1], "none again": runs[2]}}


def _isolation(layout: str) -> Callable[[bool], dict[str, Any]]:
    def run(full: bool) -> dict[str, Any]:
        seconds = 5.0 if full else 0.5
        kw = {"rate": 5000, "latency": True, "hub": LOSSLESS_HUB, "policy": "drop_newest",
              "layout": layout}
        base = net_run("grpc", 100, int(5000 * seconds), **kw)
        slow = net_run("grpc", 100, int(5000 * seconds), stalled=True, **kw)
        return {"p99 ms": base["latency_ms"]["p99"],
                "p99 ms with stalled": slow["latency_ms"]["p99"],
                "isolation ratio": slow["latency_ms"]["p99"] / base["latency_ms"]["p99"],
                "lost": base["lost"] + slow["lost"],
                "_detail": {"alone": base, "stalled": slow}}
    return run


def _fairness(layout: str) -> Callable[[bool], dict[str, Any]]:
    def run(full: bool) -> dict[str, Any]:
        seconds = 5.0 if full else 0.5
        kw = {"rate": 1000, "latency": True, "hub": LOSSLESS_HUB, "layout": layout}
        alone = net_run("grpc", 10, int(1000 * seconds), **kw)
        flood = net_run("grpc", 10, int(1000 * seconds), flood=True, **kw)
        return {"B p99 ms alone": alone["latency_ms"]["p99"],
                "B p99 ms flooded": flood["latency_ms"]["p99"],
                "fairness ratio": flood["latency_ms"]["p99"] / alone["latency_ms"]["p99"],
                "_detail": {"alone": alone, "flood": flood}}
    return run


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


def _latency_check(m: dict[str, float]) -> tuple[str, bool | None]:
    """The absolute latency targets (the ones against NATS are in the summary's peer
    section, computed only against a peer of the same layout)."""
    parts, ok = [], True
    for key, bound in (("5000/s S=100 p99 ms", 5.0), ("500/s S=100 p99 ms", 10.0),
                       ("50/s S=100 p50 ms", 2.0)):
        v = m.get(key)
        if v is None:
            continue
        parts.append(f"{key} = {v:.3g} (< {bound:g})")
        ok = ok and v < bound
    lost = sum(v for k, v in m.items() if k.endswith("lost"))
    if not parts:
        return "no figure", None
    return "; ".join(parts) + f"; lost {lost:g}", ok and lost == 0


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
    # Over the network. Layout "conn": one connection and one Subscribe stream per
    # subscriber (NATS and Redis: one connection per subscriber), the headline; "mux":
    # each subscriber process multiplexes its subscriptions on one stream. A peer's
    # ratio is quoted only against the scenario of its own layout (peer_of + layout).
    Scenario("grpc_fanout", "gRPC fan-out, one connection + stream per subscriber, "
             "1 publisher, 200 B, lossless", ">= 1M deliveries/s at S=100, 0 lost; "
             ">= 3x NATS at S=100, >= NATS at S=1", _fanout("grpc"),
             _lossless("S=100", 1e6), needs_grpc=True, layout="conn"),
    Scenario("grpc_fanout_mux", "gRPC fan-out, subscriptions multiplexed on one stream "
             "per subscriber process", ">= 1M deliveries/s at S=100, 0 lost",
             _fanout("grpc", "mux"), _lossless("S=100", 1e6), needs_grpc=True, layout="mux"),
    Scenario("nats_fanout", "NATS fan-out (peer)", "reference for grpc_fanout",
             _fanout("nats"), _info, peer_of="grpc_fanout", layout="conn"),
    Scenario("redis_fanout", "Redis pub/sub fan-out (peer)", "reference for grpc_fanout",
             _fanout("redis"), _info, peer_of="grpc_fanout", layout="conn"),
    Scenario("grpc_latency", "gRPC latency, one connection + stream per subscriber, "
             "50/500/5,000 ev/s x S=10 and S=100 (S=100 also 200/1,000/2,000)",
             "p99 < 5 ms at 5,000 ev/s x 100; at 50 ev/s x 100 p50 < 2 ms and p99 <= NATS; "
             "at 500 ev/s x 100 p99 < 10 ms and <= 2x NATS", _latency("grpc"),
             _latency_check, needs_grpc=True, layout="conn"),
    Scenario("grpc_latency_mux", "gRPC latency, subscriptions multiplexed on one stream "
             "per subscriber process", "p99 < 5 ms at 5,000 ev/s x 100",
             _latency("grpc", "mux"), _latency_check, needs_grpc=True, layout="mux"),
    Scenario("nats_latency", "NATS latency (peer)", "reference for grpc_latency",
             _latency("nats"), _info, peer_of="grpc_latency", layout="conn"),
    Scenario("redis_latency", "Redis latency (peer)", "reference for grpc_latency",
             _latency("redis"), _info, peer_of="grpc_latency", layout="conn"),
    Scenario("grpc_floor", "gRPC floor: the same clients against a grpc.aio relay with no "
             "hub (bench/floor_worker.py), one connection + stream per subscriber",
             "reference: what any one-process grpc.aio server costs per stream message",
             grpc_floor, _info, layout="conn"),
    Scenario("grpc_workers", "gRPC on the jetstream log with 1 and 2 worker processes "
             "(serve --workers), one connection + stream per subscriber",
             "reference: what a second worker process buys", grpc_workers, _info,
             needs_grpc=True, layout="conn"),
    Scenario("grpc_ingest", "gRPC ingest: events/s into the server from one publisher "
             "connection, S=1", ">= NATS (reference)", _ingest("grpc"), _info,
             needs_grpc=True, layout="conn"),
    Scenario("nats_ingest", "NATS ingest (peer)", "reference for grpc_ingest",
             _ingest("nats"), _info, peer_of="grpc_ingest", layout="conn"),
    Scenario("redis_ingest", "Redis ingest (peer)", "reference for grpc_ingest",
             _ingest("redis"), _info, peer_of="grpc_ingest", layout="conn"),
    Scenario("grpc_publish_cost", "gRPC publish rate, S=1 vs +1,000 idle-but-healthy "
             "subscribers (and vs 1,000 reading ones, multiplexed)", "ratio >= 0.5",
             grpc_publish_cost, _at_least("ratio", 0.5), needs_grpc=True, layout="mux"),
    Scenario("grpc_auth_cost", "gRPC publish rate with a 100-rule access policy vs none "
             "(same run: none, policy, none)", "ratio >= 0.9", grpc_auth_cost,
             _at_least("ratio", 0.9), needs_grpc=True, layout="conn"),
    Scenario("grpc_isolation", "gRPC slow-subscriber isolation at 5,000 ev/s, S=100, one "
             "connection + stream per subscriber", "p99 with stalled <= 1.2x without",
             _isolation("conn"), _at_most("isolation ratio", 1.2), needs_grpc=True,
             layout="conn"),
    Scenario("grpc_isolation_mux", "gRPC slow-subscriber isolation, multiplexed",
             "p99 with stalled <= 1.2x without", _isolation("mux"),
             _at_most("isolation ratio", 1.2), needs_grpc=True, layout="mux"),
    Scenario("grpc_fairness", "gRPC namespace fairness, one connection + stream per "
             "subscriber", "B p99 flooded <= 2x alone", _fairness("conn"),
             _at_most("fairness ratio", 2.0), needs_grpc=True, layout="conn"),
    Scenario("grpc_fairness_mux", "gRPC namespace fairness, multiplexed",
             "B p99 flooded <= 2x alone", _fairness("mux"), _at_most("fairness ratio", 2.0),
             needs_grpc=True, layout="mux"),
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
    # The log backends (issue 11): our server on each log, the memory log the reference in
    # the same run, NATS JetStream through nats-py (ordered push consumers) the peer.
    Scenario("log_publish", "Log backends: publish ack round trip, publish rate and "
             "publish-to-delivery latency (S=10) on memory, local (each fsync), jetstream "
             "(1 and 3 NATS nodes), and JetStream itself", "jetstream ack p50 <= "
             "JetStream's own + 1 ms, 0 lost", _logs.log_publish, _logs.log_publish_check,
             needs_grpc=True, layout="conn"),
    Scenario("log_fanout", "Log backends: fan-out S=100 on memory and jetstream (1 and 3 "
             "NATS nodes), and JetStream itself (an ordered consumer per subscriber)",
             ">= JetStream's own deliveries/s, 0 lost", _logs.log_fanout,
             _logs.log_fanout_check, needs_grpc=True, layout="conn"),
    Scenario("grpc_hostile", "Hostile clients (issue 9), one abuse at a time, each against "
             "its own server under 1,000 ev/s to 100 healthy subscribers",
             "healthy p99 <= 2x calm, 0 lost, 0 evicted, RSS within budget; other-ns "
             "publish and Health p99 < 50 ms", grpc_hostile, hostile_check,
             needs_grpc=True, layout=HOSTILE_LAYOUT, runs=1, report=hostile_report),
]}

QUICK = ["core_fanout", "core_publish_cost", "core_latency_isolation", "core_fairness",
         "core_churn", "core_idle", "grpc_fanout", "grpc_fanout_mux", "nats_fanout",
         "redis_fanout", "grpc_latency", "nats_latency", "redis_latency", "grpc_floor",
         "grpc_ingest",
         "nats_ingest", "redis_ingest", "grpc_auth_cost", "grpc_churn", "grpc_idle"]


if __name__ == "__main__":  # debugging aid: python -m bench._scenarios NAME
    print(json.dumps(SCENARIOS[sys.argv[1]].run(False), indent=1, default=str))

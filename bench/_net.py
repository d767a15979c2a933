"""One run of a network scenario: server, subscriber processes and publisher(s) on
loopback, each a separate process with a bounded lifetime."""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path
from typing import Any

from bench._proc import ProcessGroup, cpu_seconds, rss_bytes
from bench._report import cdf_points
from bench._servers import start_server
from bench._util import percentiles

__all__ = ["net_run"]


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def net_run(
    system: str,
    subscribers: int,
    events: int,
    *,
    procs: int = 2,
    streams: int = 1,
    rate: float | None = None,
    stalled: bool = False,
    idle: int = 0,
    flood: bool = False,
    latency: bool = False,
    deadline: float = 60.0,
    hub: dict | None = None,
    policy: str = "block",
) -> dict[str, Any]:
    """Run one publisher and *subscribers* subscribers (over *procs* processes).

    :param system: "grpc", "nats" or "redis"
    :param events: events the publisher sends (paced at *rate* events/s if given)
    :param streams: gRPC streams per subscriber process (subscriptions are spread)
    :param stalled: add one subscriber that reads nothing (gRPC)
    :param idle: add this many idle-but-healthy subscriptions (gRPC, one process, 4
        streams): same namespace, a filter no event matches, heartbeats acked
    :param flood: flood namespace "a" at full speed meanwhile (gRPC)
    :param latency: collect publish-to-receive latencies
    :returns: figures of the run (throughput, losses, latency, CPU per process)
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-lat-"))
    with ProcessGroup() as group:
        group.cleanup(tmp)  # the raw samples go; percentiles and a CDF stay in the result
        server, address = start_server(group, system, deadline + 30, hub=hub)
        base = {"system": system, "address": address, "idle_timeout": 5.0}
        subs = []
        for i, n in enumerate(_split(subscribers, procs)):
            params = {**base, "role": "sub", "index": i, "subscriptions": n, "streams": streams,
                      "expected": n * events, "policy": policy}
            if latency:
                params["lat_file"] = str(tmp / f"lat{i}.bin")
            subs.append(group.python(f"sub{i}", "bench.net_worker", params, deadline))
        extra = []
        if stalled:
            extra.append(group.python("stalled", "bench.net_worker", {
                **base, "role": "sub", "index": 99, "subscriptions": 1, "stalled": True,
                "policy": "drop_newest", "max_events": 1000}, deadline))
        if idle:
            extra.append(group.python("idle", "bench.net_worker", {
                **base, "role": "sub", "index": 97, "subscriptions": idle, "streams": 4,
                "filters": ['topic=="/never-published"'], "hold": True,
                "policy": "drop_newest"}, deadline))
        if flood:
            extra.append(group.python("flood_sub", "bench.net_worker", {
                **base, "role": "sub", "index": 98, "subscriptions": 1, "namespace": "a",
                "policy": "drop_newest", "max_events": 10000}, deadline))
        for child in subs + extra:
            child.wait_for("ready", 60)
        pub = group.python("pub", "bench.net_worker", {
            **base, "role": "pub", "events": events, "rate": rate}, deadline)
        pubs = [pub]
        if flood:
            pubs.append(group.python("flood_pub", "bench.net_worker", {
                **base, "role": "pub", "events": 10**9, "namespace": "a"}, deadline * 0.5))
        for child in pubs:
            child.wait_for("ready", 30)
        rss_before = rss_bytes(server.pid)
        for child in subs + extra + pubs:
            child.send("go")
        pres = pub.wait_for("result", deadline)["result"]
        sres = [child.wait_for("result", deadline)["result"] for child in subs]
        server_cpu = cpu_seconds(server.pid)
        server_rss = rss_bytes(server.pid)
        cpu = {"server": round(server_cpu, 3), "pub": round(pres["cpu_s"], 3)}
        for i, r in enumerate(sres):
            cpu[f"sub{i}"] = round(r["cpu_s"], 3)
        for child in extra + pubs[1:]:
            child.kill()
            cpu[child.name] = round(child.last_cpu, 3)
        lat = array("q")
        for f in sorted(tmp.glob("lat*.bin")):
            lat.frombytes(f.read_bytes())
    received = sum(r["received"] for r in sres)
    expected = subscribers * pres["published"]
    last = max((r["last_ns"] for r in sres if r["last_ns"]), default=pres["end_ns"])
    elapsed = max(1e-9, (last - pres["start_ns"]) / 1e9)
    out: dict[str, Any] = {
        "deliveries_per_s": received / elapsed, "elapsed_s": elapsed,
        "published": pres["published"], "publish_per_s": pres["published"] / max(
            1e-9, (pres["end_ns"] - pres["start_ns"]) / 1e9),
        "delivered": received, "expected": expected, "lost": expected - received,
        "drop_notices": sum(r["dropped"] for r in sres), "publish_errors": pres["errors"],
        "cpu_s": cpu, "server_rss": server_rss, "server_rss_before": rss_before,
        "deliveries_per_server_cpu_s": received / server_cpu if server_cpu else None,
    }
    if latency:
        out["latency_ms"] = percentiles([x / 1000 for x in lat])
        out["latency_cdf_ms"] = cdf_points([x / 1000 for x in lat])
        out["latency_samples"] = len(lat)
    return out

"""One run of a network scenario: server, subscriber processes and one publisher on
loopback, each a separate process with a bounded lifetime, through one or more phases
(a rate and an event count each) against the same server and subscribers."""

from __future__ import annotations

import json
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._proc import (
    Child,
    ProcessGroup,
    cpu_seconds,
    established,
    rss_bytes,
    tree_cpu_seconds,
)
from bench._report import cdf_points
from bench._servers import start_server
from bench._util import percentiles

__all__ = ["LAYOUTS", "Clients", "net_run", "split"]

#: Subscriber layouts: what each means, as the report prints it.
LAYOUTS = {
    "conn": "one connection and one Subscribe stream per subscriber",
    "mux": "one connection per subscriber process, its subscriptions multiplexed on one "
           "Subscribe stream",
}


def split(total: int, parts: int) -> list[int]:
    """*total* spread over at most *parts* near-equal shares."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def subscriber_procs(subscribers: int) -> int:
    """Subscriber processes for S subscribers: 1 for S=1, 2 up to S=999, 4 from 1,000."""
    return 1 if subscribers == 1 else (4 if subscribers >= 1000 else 2)


@dataclass
class Clients:
    """Subscriber processes and one publisher against a server at *address*; the
    subscribers' raw latencies go to *lat_dir* when given."""

    group: ProcessGroup
    system: str
    address: str
    deadline: float
    lat_dir: Path | None = None
    subs: list[Child] = field(default_factory=list)
    sub_counts: list[int] = field(default_factory=list)
    pub: Child | None = None

    def start_subscribers(self, subscribers: int, procs: int, **params: Any) -> None:
        """Start *subscribers* subscriptions over *procs* processes (not waiting)."""
        for i, n in enumerate(split(subscribers, procs)):
            p = {"system": self.system, "address": self.address, "role": "sub",
                 "index": i, "subscriptions": n, **params}
            if self.lat_dir is not None:
                p["lat_dir"] = str(self.lat_dir)
            self.subs.append(self.group.python(f"sub{i}", "bench.net_worker", p,
                                               self.deadline))
            self.sub_counts.append(n)

    def start_publisher(self, name: str = "pub", **params: Any) -> Child:
        child = self.group.python(name, "bench.net_worker", {
            "system": self.system, "address": self.address, "role": "pub", **params},
            self.deadline)
        if self.pub is None:
            self.pub = child
        return child

    def progress(self) -> dict[int, int]:
        """Deliveries received so far per phase, over every subscriber process."""
        for child in self.subs:
            child.send("progress")
        total: dict[int, int] = {}
        for child in self.subs:
            msg = child.take("progress", 30)["progress"]
            for k, v in msg["received"].items():
                total[int(k)] = total.get(int(k), 0) + v
        return total

    def drain(self, phase: int, expected: int, idle_timeout: float, timeout: float) -> int:
        """Wait until the subscribers have *expected* deliveries of *phase*, nothing came
        for *idle_timeout* s, or *timeout* s passed; return what they have."""
        end = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            got = self.progress().get(phase, 0)
            now = time.monotonic()
            if got != last:
                last, last_change = got, now
            if got >= expected or now - last_change > idle_timeout or now > end:
                return got
            time.sleep(0.02)

    def stop_subscribers(self, timeout: float) -> list[dict[str, Any]]:
        """Stop the subscriber processes; their results (latencies are then on disk)."""
        for child in self.subs:
            child.send("stop")
        return [child.wait_for("result", timeout)["result"] for child in self.subs]

    def finish(self, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Stop the publisher and the subscribers; their results."""
        assert self.pub is not None
        self.pub.send("stop")
        pres = self.pub.wait_for("result", timeout)["result"]
        return pres, self.stop_subscribers(timeout)

    def latencies(self, phase: int) -> array[int]:
        """Raw latencies (us) of *phase* over every subscriber process (after finish)."""
        lat: array[int] = array("i")
        if self.lat_dir is not None:
            for f in sorted(self.lat_dir.glob(f"*-{phase}.bin")):
                lat.frombytes(f.read_bytes())
        return lat


def latency_figures(lat: Sequence[int]) -> dict[str, Any]:
    """Exact percentiles and a downsampled CDF of raw latencies in us, in ms."""
    ms = [x / 1000 for x in lat]
    return {"latency_ms": percentiles(ms), "latency_cdf_ms": cdf_points(ms),
            "latency_samples": len(ms)}


def net_run(
    system: str,
    subscribers: int,
    events: int | None = None,
    *,
    phases: Sequence[dict[str, Any]] | None = None,
    procs: int | None = None,
    layout: str = "conn",
    streams: int = 1,
    rate: float | None = None,
    stalled: bool = False,
    idle: int = 0,
    flood: bool = False,
    latency: bool = False,
    deadline: float = 60.0,
    hub: dict[str, Any] | None = None,
    policy: str = "block",
    idle_timeout: float = 5.0,
    external: tuple[Child, str] | None = None,
    worker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one publisher and *subscribers* subscribers (over *procs* processes) through
    *phases* (default: one phase of *events* events at *rate*).

    :param system: "grpc", "nats", "redis" or "floor" (a grpc.aio relay, no hub)
    :param phases: ``{"rate": events/s or None, "events": N}`` each, run one after the
        other against the same server and subscribers; each starts once the previous
        one's deliveries have all arrived (or stopped coming for *idle_timeout* s)
    :param procs: subscriber processes (default :func:`subscriber_procs`)
    :param layout: gRPC subscriber layout, "conn" or "mux" (see :data:`LAYOUTS`)
    :param streams: Subscribe streams per process in the "mux" layout
    :param stalled: add one subscriber that reads nothing (gRPC)
    :param idle: add this many idle-but-healthy subscriptions (gRPC, one process, 4
        streams): same namespace, a filter no event matches, heartbeats acked
    :param flood: flood namespace "a" at full speed meanwhile (gRPC)
    :param latency: collect publish-to-receive latencies
    :param external: a server started by the caller (its process, for CPU figures, and
        the address clients connect to) instead of one started here
    :param worker: more parameters for every subscriber and publisher process
    :returns: figures of each phase under ``"phases"``; the first phase's also at the top
        (throughput, losses, latency, CPU seconds of each process during the phase)
    """
    if phases is None:
        phases = [{"rate": rate, "events": events}]
    procs = procs or subscriber_procs(subscribers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-lat-"))
    with ProcessGroup() as group:
        group.cleanup(tmp)  # the raw samples go; percentiles and a CDF stay in the result
        if external is not None:
            server, address = external
        else:
            server, address = start_server(group, system, deadline + 30, hub=hub)
        # the floor (bench/floor_worker.py) is served to the same gRPC clients
        clients = Clients(group, "grpc" if system == "floor" else system, address, deadline,
                          tmp if latency else None)
        clients.start_subscribers(subscribers, procs, layout=layout, streams=streams,
                                  policy=policy, **(worker or {}))
        extra: list[Child] = []
        base = {"system": system, "address": address, "role": "sub"}
        if stalled:
            extra.append(group.python("stalled", "bench.net_worker", {
                **base, "index": 99, "subscriptions": 1, "stalled": True,
                "policy": "drop_newest", "max_events": 1000}, deadline))
        if idle:
            extra.append(group.python("idle", "bench.net_worker", {
                **base, "index": 97, "subscriptions": idle, "layout": "mux", "streams": 4,
                "filters": ['topic=="/never-published"'], "policy": "drop_newest"},
                deadline))
        if flood:
            extra.append(group.python("flood_sub", "bench.net_worker", {
                **base, "index": 98, "subscriptions": 1, "namespace": "a",
                "policy": "drop_newest", "max_events": 10000}, deadline))
        for child in clients.subs + extra:
            child.wait_for("ready", 60)
        # the server's side of the layout: connections it accepted from the subscribers
        server_connections = established(int(address.split(",")[0].rsplit(":", 1)[1]))
        pub = clients.start_publisher(**(worker or {}))
        pubs = [pub]
        if flood:
            pubs.append(clients.start_publisher("flood_pub", namespace="a"))
        for child in pubs:
            child.wait_for("ready", 30)
        watched = {"server": server, "pub": pub, **{c.name: c for c in clients.subs + extra},
                   **{c.name: c for c in pubs[1:]}}
        rss_before = rss_bytes(server.pid)
        if flood:
            pubs[1].send(json.dumps({"phase": 0, "rate": None, "events": None}))
        runs = []
        for k, ph in enumerate(phases):
            # the server's figure includes its workers (serve --workers)
            cpu0 = {name: (tree_cpu_seconds if name == "server" else cpu_seconds)(c.pid)
                    for name, c in watched.items()}
            pub.send(json.dumps({"phase": k, "rate": ph.get("rate"), "events": ph["events"]}))
            done = pub.take("phase_done", deadline)
            expected = done["published"] * subscribers
            got = clients.drain(k, expected, idle_timeout, deadline)
            cpu = {name: round((tree_cpu_seconds if name == "server" else cpu_seconds)(
                       c.pid) - cpu0[name], 3) for name, c in watched.items()}
            runs.append({"done": done, "got": got, "expected": expected, "cpu_s": cpu,
                         "server_rss": rss_bytes(server.pid)})
        for child in extra + pubs[1:]:
            child.kill()
        pres, sres = clients.finish(deadline)
        lats = [clients.latencies(k) for k in range(len(phases))] if latency else []
    out_phases = []
    for k, (ph, r) in enumerate(zip(phases, runs, strict=True)):
        done = r["done"]
        received = sum(s["phases"].get(str(k), {}).get("received", 0) for s in sres)
        last = max((s["phases"][str(k)]["last_ns"] for s in sres if str(k) in s["phases"]),
                   default=done["end_ns"])
        first = min((s["phases"][str(k)]["first_ns"] for s in sres if str(k) in s["phases"]),
                    default=last)
        elapsed = max(1e-9, (last - done["start_ns"]) / 1e9)
        server_cpu = r["cpu_s"]["server"]
        fig: dict[str, Any] = {
            "rate": ph.get("rate"), "subscribers": subscribers, "layout": layout,
            "deliveries_per_s": received / elapsed, "elapsed_s": elapsed,
            # first to last receipt: a constant latency does not lower it, a growing
            # backlog does (the paced phases' "kept up" test)
            "receive_rate": received / ((last - first) / 1e9) if last > first else None,
            "published": done["published"],
            "publish_per_s": done["published"] / max(
                1e-9, (done["end_ns"] - done["start_ns"]) / 1e9),
            "delivered": received, "expected": r["expected"],
            "lost": r["expected"] - received, "publish_errors": done["errors"],
            "publisher_broken": done.get("broken"),
            "cpu_s": r["cpu_s"], "server_rss": r["server_rss"],
            "deliveries_per_server_cpu_s": received / server_cpu if server_cpu else None,
        }
        if latency:
            fig.update(latency_figures(lats[k]))
        out_phases.append(fig)
    out = {**out_phases[0], "phases": out_phases, "server_rss_before": rss_before,
           "drop_notices": sum(s["dropped"] for s in sres),
           "ended": sum(s["ended"] for s in sres), "subscriber_procs": procs,
           "server_connections": server_connections,
           "publisher": {"errors": pres["errors"], "broken": pres["broken"]}}
    if len(out_phases) > 1:  # the run's CPU: every phase's
        out["cpu_s"] = {name: round(sum(f["cpu_s"][name] for f in out_phases), 3)
                        for name in out_phases[0]["cpu_s"]}
    return out

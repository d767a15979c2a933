"""Scenarios of the log backends (issue 11): our server on each log, with the memory log
as the reference in the same run, and NATS JetStream through nats-py's own API as the
peer of the ``jetstream`` log.

Setups (:data:`SETUPS`): ``memory``; ``local`` with each fsync setting (a fresh data
directory in a temporary folder); ``jetstream`` on one nats-server (R1 streams) and on a
3-node cluster (R3); the peer, ``js``, on the same NATS layouts. Every NATS runs with
JetStream and ``max_payload: 8MB`` (``bench._servers.start_jetstream``), and is started
afresh for each setup and run.

* ``log_publish``: per setup, (1) the publish acknowledgement round trip, one publish at
  a time (``bench/ack_worker.py``: our unary ``Publish`` with an event id, or
  ``js.publish``), p50/p99; (2) the publish rate of the harness's publisher (100 events
  per write, 8 writes unacknowledged; ``js.publish_async`` for the peer) with S=10
  subscribers, and (3) the publish-to-delivery latency (p50/p99) of a paced phase,
  through ``net_run`` (``bench/_net.py``) with one connection per subscriber (the peer:
  one ordered push consumer per subscriber). Target: with ``jetstream``, the ack p50 at
  most JetStream's own (``js``, same NATS layout) + 1 ms.
* ``log_fanout``: S=100 subscribers, 200-byte events, unpaced: deliveries/s of our server
  on memory and on ``jetstream`` (1 and 3 nodes) and of the peer. Target: ``jetstream``
  at least the peer's deliveries/s (same NATS layout).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._net import net_run
from bench._proc import ProcessGroup
from bench._servers import start_grpc_server, start_jetstream
from bench._util import percentiles

__all__ = ["SETUPS", "log_fanout", "log_fanout_check", "log_publish", "log_publish_check"]

#: the log tables of the server's configuration, as _servers._toml writes them
_HUB = {"hub": {"heartbeat_interval": 5.0, "max_missed_heartbeats": 100}}


@dataclass(frozen=True)
class Setup:
    """One system under test: our server on a log (``system`` "grpc"), or the peer."""

    label: str
    system: str  # "grpc" or "jetstream" (nats-py's own API)
    log: str = "memory"  # memory, local, jetstream
    fsync: str = "always"
    nats_nodes: int = 0

    def tables(self, folder: Path, urls: str) -> dict[str, Any]:
        """The server's configuration tables for this setup."""
        if self.log == "local":
            return {**_HUB, "log": {"backend": "local", "local": {
                "data_dir": str(folder / "data"), "fsync": self.fsync}}}
        if self.log == "jetstream":
            return {**_HUB, "log": {"backend": "jetstream", "jetstream": {
                "servers": urls.split(","), "replicas": self.nats_nodes}}}
        return dict(_HUB)


SETUPS = [
    Setup("memory", "grpc"),
    Setup("local always", "grpc", "local", "always"),
    Setup("local batch", "grpc", "local", "batch"),
    Setup("local interval", "grpc", "local", "interval"),
    Setup("jetstream 1 node", "grpc", "jetstream", nats_nodes=1),
    Setup("jetstream 3 nodes", "grpc", "jetstream", nats_nodes=3),
    Setup("js 1 node", "jetstream", nats_nodes=1),
    Setup("js 3 nodes", "jetstream", nats_nodes=3),
]


def _ack_round_trips(group: ProcessGroup, system: str, address: str, count: int,
                     replicas: int) -> dict[str, float]:
    child = group.python("acks", "bench.ack_worker", {
        "system": system, "address": address, "count": count, "replicas": replicas}, 120)
    samples = [x / 1000 for x in child.wait_for("result", 120)["result"]["ack_us"]]
    return percentiles(samples)


def _run_setup(setup: Setup, *, subscribers: int, phases: list[dict[str, Any]],
               acks: int, latency: bool) -> dict[str, Any]:
    """Start the setup's NATS (if any), measure the ack round trip (if *acks*), then run
    the publisher and subscribers through *phases*."""
    with ProcessGroup() as group:
        folder = Path(tempfile.mkdtemp(prefix="bench-log-"))
        group.cleanup(folder)
        nats = start_jetstream(group, setup.nats_nodes, 300) if setup.nats_nodes else None
        urls = nats[1] if nats else ""
        out: dict[str, Any] = {}
        if acks:
            if setup.system == "grpc":
                server = start_grpc_server(group, 300, config=setup.tables(folder, urls))
                out["ack_ms"] = _ack_round_trips(group, "grpc", server.address, acks, 0)
                server.child.kill()
            else:
                assert nats is not None
                out["ack_ms"] = _ack_round_trips(group, "jetstream", urls, acks,
                                                 setup.nats_nodes)
        # a fresh log for the load (the ack run left events in it)
        run_folder = folder / "load"
        run_folder.mkdir()
        if setup.system == "grpc":
            run = net_run("grpc", subscribers, phases=phases, latency=latency,
                          hub=setup.tables(run_folder, urls), deadline=120,
                          policy="drop_newest")
        else:
            assert nats is not None
            # the ack run created stream "bench": the load uses it too (new events only)
            run = net_run("jetstream", subscribers, phases=phases, latency=latency,
                          external=nats, worker={"replicas": setup.nats_nodes},
                          deadline=120)
        out["run"] = run
    return out


def log_publish(full: bool) -> dict[str, Any]:
    events = 20_000 if full else 2_000
    rate, seconds = (1000, 5.0) if full else (500, 2.0)
    acks = 2000 if full else 300
    out: dict[str, Any] = {"_detail": {}}
    for setup in SETUPS:
        phases = [{"rate": None, "events": events},
                  {"rate": rate, "events": int(rate * seconds)}]
        r = _run_setup(setup, subscribers=10, phases=phases, acks=acks, latency=True)
        unpaced, paced = r["run"]["phases"]
        label = setup.label
        out[f"{label} ack p50 ms"] = r["ack_ms"]["p50"]
        out[f"{label} ack p99 ms"] = r["ack_ms"]["p99"]
        out[f"{label} publish/s"] = unpaced["publish_per_s"]
        out[f"{label} {rate}/s p50 ms"] = paced["latency_ms"]["p50"]
        out[f"{label} {rate}/s p99 ms"] = paced["latency_ms"]["p99"]
        out[f"{label} lost"] = unpaced["lost"] + paced["lost"]
        out["_detail"][label] = {"ack_ms": r["ack_ms"], "phases": r["run"]["phases"]}
    return out


def log_publish_check(m: dict[str, float]) -> tuple[str, bool | None]:
    parts, ok = [], True
    for nodes in ("1 node", "3 nodes"):
        ours, peer = m.get(f"jetstream {nodes} ack p50 ms"), m.get(f"js {nodes} ack p50 ms")
        if ours is None or peer is None:
            continue
        parts.append(f"jetstream {nodes} ack p50 {ours:.2f} ms vs JetStream {peer:.2f} + 1")
        ok = ok and ours <= peer + 1.0
    lost = sum(v for k, v in m.items() if k.endswith("lost"))
    if not parts:
        return "no figure", None
    return "; ".join(parts) + f"; lost {lost:g}", ok and lost == 0


FANOUT_SETUPS = [s for s in SETUPS if s.log in ("memory", "jetstream") or s.system != "grpc"]


def log_fanout(full: bool) -> dict[str, Any]:
    events = 10_000 if full else 2_000
    out: dict[str, Any] = {"_detail": {}}
    for setup in FANOUT_SETUPS:
        r = _run_setup(setup, subscribers=100, phases=[{"rate": None, "events": events}],
                       acks=0, latency=False)
        run = r["run"]
        out[f"{setup.label} S=100"] = run["deliveries_per_s"]
        out[f"{setup.label} S=100 lost"] = run["lost"]
        out["_detail"][setup.label] = {k: v for k, v in run.items() if k != "phases"}
    return out


def log_fanout_check(m: dict[str, float]) -> tuple[str, bool | None]:
    parts, ok = [], True
    for nodes in ("1 node", "3 nodes"):
        ours, peer = m.get(f"jetstream {nodes} S=100"), m.get(f"js {nodes} S=100")
        if ours is None or peer is None:
            continue
        parts.append(f"jetstream {nodes} {ours:,.0f} vs JetStream {peer:,.0f} deliveries/s")
        ok = ok and ours >= peer
    lost = sum(v for k, v in m.items() if k.endswith("lost"))
    if not parts:
        return "no figure", None
    return "; ".join(parts) + f"; lost {lost:g}", ok and lost == 0

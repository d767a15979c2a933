"""The hostile-clients scenario (issue 9): each abuse of ``bench.hostile_worker`` runs
alone against a fresh server that serves a steady load, and the report says what the
abusive client got and what everyone else saw meanwhile.

One abuse, one server (so that what one abuse leaves behind cannot be charged to the
next): ``broadcaster serve`` with :data:`HOSTILE_SERVER` on a TCP port and a unix socket;
100 healthy subscribers of namespace ``steady`` over 2 processes; one publisher sending
1,000 events/s into it without pause; a probe (``bench.probe_worker``) timing a Publish
into namespace ``probe`` and gRPC Health over TCP, the unix socket and a new connection.
Phases, tagged in every event's payload by the time it was scheduled: warm-up (0.5 s,
not judged; the abusive processes start and load grpc meanwhile), calm (1.5 s quick, 3 s
full), then the abuse window: from the moment the abusive processes are told to begin
until 1 s (quick) / 2 s (full) after the last one reported.
Afterwards the publisher stops, the healthy subscribers get everything still in flight
(until nothing came for 10 s), and the losses are counted per phase.

Target per abuse: healthy p99 during the window <= 2x the calm p99 of the same server,
0 lost, 0 healthy subscriptions ended, server RSS at most :data:`MEMORY_BUDGET` above the
calm peak; issue 9 adds: the other namespace's publish round trip and Health at p99
under 50 ms (reported next to it).
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._net import Clients, latency_figures
from bench._proc import Child, ProcessGroup, thread_times, vmrss_bytes
from bench._servers import scrape_metrics, start_grpc_server
from bench.hostile_worker import ABUSES

__all__ = ["HOSTILE_LAYOUT", "HOSTILE_SERVER", "MEMORY_BUDGET", "abuse_run", "grpc_hostile",
           "hostile_check", "hostile_report"]

STEADY = "steady"
STEADY_RATE = 1000  # events/s into the steady namespace, the whole run
HEALTHY = 100  # healthy subscribers of it, over 2 processes
#: Layout of the healthy subscribers ("mux": one Subscribe stream per process). The
#: calm run must not be saturated for the 2x target to mean anything: on a 2-core box
#: 100 one-stream-per-subscriber clients at 1,000 ev/s are 100k stream messages/s.
HOSTILE_LAYOUT = "mux"
#: Retained event bytes over all namespaces (``max_retained_bytes``; default 512 MiB).
RETAINED_BUDGET = 128 * 2**20
#: The server: defaults, except a 1 s heartbeat (so that heartbeat abuses show within
#: the window; default 10 s), a 16 MiB per-namespace retention (so that filling it is
#: quick) and :data:`RETAINED_BUDGET` over all namespaces (so that filling many shows
#: the server-wide bound at work).
HOSTILE_SERVER: dict[str, Any] = {
    "hub": {"heartbeat_interval": 1.0, "max_missed_heartbeats": 3,
            "max_retained_bytes": RETAINED_BUDGET},
    "defaults": {"retention": {"max_bytes": 16 * 2**20}},
}
#: Resident memory the server may add above its calm peak while one client abuses it:
#: the retained-events budget it is configured with, plus 128 MiB for everything else
#: (connections, streams, subscriptions, buffers).
MEMORY_BUDGET = RETAINED_BUDGET + 128 * 2**20
PROBE_TARGET_MS = 50.0  # issue 9: other-namespace publish and Health p99 under this

WARM, CALM, ABUSE = 3, 0, 1


class _Sampler:
    """Server RSS, and the CPU seconds and CPU-wait seconds of every watched process,
    phase by phase."""

    def __init__(self, server: Child, watched: dict[str, Child]) -> None:
        self.server = server
        self.watched = watched
        self.peak: dict[int, int] = {}
        self.loop: tuple[float, float | None] = (0.0, None)  # its main thread's, last seen

    def sample(self, phase: int) -> None:
        self.peak[phase] = max(self.peak.get(phase, 0), vmrss_bytes(self.server.pid))

    def hold(self, phase: int, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sample(phase)
            time.sleep(min(0.05, left))

    def cpu(self) -> dict[str, tuple[float, float | None]]:
        """Per watched process: CPU seconds and seconds waited for a CPU, so far; and the
        same of the server's main thread, its event loop (``server_loop``)."""
        out = {name: (c.cpu(), c.cpu_wait()) for name, c in self.watched.items()}
        loop = thread_times(self.server.pid)
        if loop is not None:  # else the last figure seen: the server is gone
            self.loop = loop
        out["server_loop"] = self.loop
        return out


def _deltas(before: dict[str, tuple[float, float | None]],
            after: dict[str, tuple[float, float | None]], field: int) -> dict[str, float | None]:
    """Per process, *field* (0: CPU seconds, 1: seconds waited for a CPU) of *after* less
    *before* (a process that began in between counts from 0); None where unknown."""
    out: dict[str, float | None] = {}
    for name, now in after.items():
        then = before.get(name, (0.0, 0.0))[field]
        v = now[field]
        out[name] = None if v is None or then is None else round(v - then, 3)
    return out


def _phase_figures(clients: Clients, phase: int, published: int, sres: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    received = sum(s["phases"].get(str(phase), {}).get("received", 0) for s in sres)
    lat = latency_figures(clients.latencies(phase))
    del lat["latency_cdf_ms"]
    return {"published": published, "delivered": received,
            "lost": published * HEALTHY - received, **lat}


def _wait_all(children: list[Child], keys: tuple[str, ...], timeout: float,
              sampler: _Sampler, phase: int = ABUSE) -> dict[str, dict[str, Any]]:
    """The first message with one of *keys* from each child (sampling RSS meanwhile, as
    *phase*'s); children without one after *timeout* s are missing from the answer."""
    got: dict[str, dict[str, Any]] = {}
    end = time.monotonic() + timeout
    while len(got) < len(children) and time.monotonic() < end:
        sampler.sample(phase)
        for child in children:
            if child.name in got:
                continue
            try:
                for key in keys:
                    if (msg := child.poll(key, 0.02)) is not None:
                        got[child.name] = msg
                        break
            except TimeoutError as exc:  # the abusive process died without a word
                got[child.name] = {"result": {"got": f"abusive process died: {exc}"[:300]}}
    return got


def abuse_run(name: str, full: bool, layout: str = HOSTILE_LAYOUT) -> dict[str, Any]:
    """Run abuse *name* alone against a fresh server under the steady load; its figures."""
    abuse = ABUSES[name]
    sizes = abuse.full if full else abuse.quick
    procs = abuse.procs[1 if full else 0]
    calm_s, after_s = (3.0, 2.0) if full else (1.5, 1.0)
    limit = 240.0 if full else 90.0  # the abusive processes' own bound
    deadline = limit + 120.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    sock = tmp / "s.sock"
    with ProcessGroup() as group:
        group.cleanup(tmp)
        server = start_grpc_server(group, deadline + 30, config=HOSTILE_SERVER, unix=sock,
                                   log_to_file=True)
        clients = Clients(group, "grpc", server.address, deadline, lat_dir=tmp)
        clients.start_subscribers(HEALTHY, 2, layout=layout, namespace=STEADY,
                                  policy="drop_newest")
        probe = group.python("probe", "bench.probe_worker",
                             {"address": server.address, "unix": str(sock)}, deadline)
        for child in [*clients.subs, probe]:
            child.wait_for("ready", 60)
        pub = clients.start_publisher(namespace=STEADY)
        pub.wait_for("ready", 30)
        watched = {"server": server.child, "pub": pub, "probe": probe,
                   **{c.name: c for c in clients.subs}}
        sampler = _Sampler(server.child, watched)

        def switch(phase: int) -> None:
            pub.send(json.dumps({"phase": phase, "switch": True}))
            probe.send(f"phase {phase}")

        pub.send(json.dumps({"phase": WARM, "rate": STEADY_RATE, "events": None}))
        probe.send(f"phase {WARM}")
        # The abusive processes start during the warm-up and load (Python, grpc, the
        # generated modules) before the calm phase; they begin when the abuse does. A
        # process loading grpc takes the server's cores for most of a second, which is
        # not something a client does to the server (it put the worst healthy latencies
        # of the short abuses into their first 0.5 s).
        base = {"abuse": name, "address": server.address, "unix": str(sock), "steady": STEADY,
                "server_pid": server.child.pid, "wait_start": True, **sizes}
        abusers = [group.python(f"abuser{i}", "bench.hostile_worker",
                                {**base, "index": i}, limit + 60.0) for i in range(procs)]
        watched.update({c.name: c for c in abusers})
        _wait_all(abusers, ("loaded", "result"), 60.0, sampler, WARM)
        time.sleep(0.5)
        switch(CALM)
        cpu0 = sampler.cpu()
        sampler.hold(CALM, calm_s)
        cpu1 = sampler.cpu()
        switch(ABUSE)
        t0 = time.monotonic()
        for child in abusers:
            child.send("start")
        ready = _wait_all(abusers, ("ready", "result"), limit, sampler)
        for child in abusers:
            child.send("go")
        left = max(1.0, limit - (time.monotonic() - t0))
        answers = _wait_all(abusers, ("result",), left, sampler)
        for child in abusers:
            if child.name not in answers:
                child.kill()
                answers[child.name] = {"result": {
                    "got": f"no answer within {limit:g} s (killed)"}}
        abuse_s = time.monotonic() - t0
        sampler.hold(ABUSE, after_s)
        cpu2 = sampler.cpu()
        window_s = time.monotonic() - t0
        pub.send("stop")
        pres = pub.wait_for("result", 60)["result"]
        probe.send("stop")
        presults = probe.wait_for("result", 30)["result"]
        published = {int(k): v["published"] for k, v in pres["phases"].items()}
        for phase in (CALM, ABUSE):
            clients.drain(phase, published.get(phase, 0) * HEALTHY, 10.0, 60.0)
        sres = clients.stop_subscribers(30)
        server_exit = server.child.proc.poll()
        metrics: dict[str, float] = {}
        if server_exit is None:
            try:
                m = scrape_metrics(server.metrics)
                metrics = {k: v for k, v in m.items() if k.startswith((
                    "broadcaster_subscribers_evicted", "broadcaster_events_dropped"))}
            except OSError:
                pass
        calm = _phase_figures(clients, CALM, published.get(CALM, 0), sres)
        during = _phase_figures(clients, ABUSE, published.get(ABUSE, 0), sres)
    results = [answers[c.name]["result"] for c in abusers]
    gots = [r.get("got", "") for r in results]
    got = gots[0] if len(set(gots)) == 1 else " | ".join(
        f"process {i}: {g}" for i, g in enumerate(gots))
    if any(c.name in ready and "result" in ready[c.name] for c in abusers):
        got = f"(failed before it started) {got}"
    p99_calm = calm["latency_ms"].get("p99")
    p99_abuse = during["latency_ms"].get("p99")
    ratio = p99_abuse / p99_calm if p99_calm and p99_abuse is not None else None
    rss_calm = sampler.peak.get(CALM, 0)
    rss_peak = sampler.peak.get(ABUSE, 0)
    bound = rss_calm + MEMORY_BUDGET
    ended = sum(s["ended"] for s in sres)
    probe_fig = {series: {phase: presults[series].get(str(k), {})
                          for phase, k in (("calm", CALM), ("abuse", ABUSE))}
                 for series in presults}
    probe_p99 = {series: v["abuse"].get("p99") for series, v in probe_fig.items()}
    probe_ok = all(v is not None and v < PROBE_TARGET_MS
                   for k, v in probe_p99.items() if k != "health_new_conn")
    lost = calm["lost"] + during["lost"]
    ok = (ratio is not None and ratio <= 2.0 and lost == 0 and ended == 0
          and rss_peak <= bound and server_exit is None)
    return {
        "abuse": name, "title": abuse.title, "control": abuse.control, "sizes": sizes,
        "procs": procs, "got": got,
        "abuser": results, "calm": calm, "during": during, "p99_ratio": ratio,
        "lost": lost, "healthy_ended": ended,
        "healthy_ended_reasons": _sum_counts(s.get("ended_reasons", {}) for s in sres),
        "healthy_drop_notices": sum(s["dropped"] for s in sres),
        "probe": probe_fig, "probe_p99_ms": probe_p99, "probe_within_target": probe_ok,
        "rss": {"calm_peak": rss_calm, "abuse_peak": rss_peak, "bound": bound},
        "cpu_s": {"calm": _deltas(cpu0, cpu1, 0),
                  "abuse": _deltas(cpu1, cpu2, 0)},
        # runnable but not running: what each process lost to the others on this machine
        "cpu_wait_s": {"calm": _deltas(cpu0, cpu1, 1),
                       "abuse": _deltas(cpu1, cpu2, 1)},
        "seconds": {"calm": calm_s, "abuser": round(abuse_s, 2), "window": round(window_s, 2)},
        "server_exit": server_exit, "metrics": metrics, "layout": layout,
        "steady_publisher": {"errors": pres["errors"], "broken": pres["broken"]},
        "within_target": ok,
    }


def grpc_hostile(full: bool, abuses: Sequence[str] | None = None) -> dict[str, Any]:
    """Every abuse (or those named), one after the other, each against its own server."""
    names = list(abuses or ABUSES)
    details = {}
    out: dict[str, Any] = {}
    for name in names:
        try:
            r = abuse_run(name, full)
        except Exception as exc:  # the harness could not finish this one: say so, go on
            details[name] = {"abuse": name, "title": ABUSES[name].title,
                             "error": f"{type(exc).__name__}: {exc}"[:500],
                             "traceback": traceback.format_exc()[-3000:],
                             "within_target": False}
            out[f"{name} p99 ratio"] = None
            continue
        details[name] = r
        out[f"{name} p99 ratio"] = r["p99_ratio"]
        out[f"{name} lost"] = r["lost"]
        out[f"{name} other-ns publish p99 ms"] = r["probe_p99_ms"].get("publish")
        out[f"{name} Health p99 ms"] = r["probe_p99_ms"].get("health_tcp")
        out[f"{name} RSS over calm MiB"] = (r["rss"]["abuse_peak"]
                                            - r["rss"]["calm_peak"]) / 2**20
    out["calm p99 ms (median over servers)"] = _median(
        [r["calm"]["latency_ms"].get("p99") for r in details.values() if "calm" in r])
    abuses = [r for r in details.values() if not ABUSES[r["abuse"]].control]
    out["abuses within target"] = sum(r["within_target"] for r in abuses)
    out["abuses run"] = len(abuses)
    out["_detail"] = details
    return out


def _sum_counts(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def _median(values: list[float | None]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    return vals[len(vals) // 2] if vals else None


def hostile_check(m: dict[str, float]) -> tuple[str, bool | None]:
    run, ok = m.get("abuses run"), m.get("abuses within target")
    if not run:
        return "no abuse ran", None
    return (f"{ok:g} of {run:g} abuses within target (healthy p99 <= 2x calm, 0 lost, "
            f"0 evicted, RSS <= calm + {MEMORY_BUDGET / 2**20:.0f} MiB)", ok == run)


def _ms(v: Any) -> str:
    return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")


def _ended(r: dict[str, Any]) -> str:
    reasons = r.get("healthy_ended_reasons") or {}
    text = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    return f"{r['healthy_ended']}" + (f" ({text})" if text else "")


def cpu_waits(r: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Milliseconds per second, calm and during the abuse: how long the server's event
    loop thread ran (``loop_ran``) and waited for a CPU while runnable (``loop_waited``),
    and how long the healthy clients (publisher, subscribers, probe: not the abusive
    processes) waited for a CPU, all their threads summed (``clients_waited``). None
    where the kernel keeps no such figure."""
    ran = r.get("cpu_s") or {}
    waits = r.get("cpu_wait_s") or {}
    spans = {"calm": r["seconds"]["calm"], "abuse": r["seconds"]["window"]}
    out: dict[str, dict[str, float | None]] = {
        "loop_ran": {}, "loop_waited": {}, "clients_waited": {}}

    def rate(v: float | None, span: float) -> float | None:
        return None if v is None else v / span * 1e3

    for phase, span in spans.items():
        w = waits.get(phase, {})
        clients = [v for k, v in w.items() if not k.startswith(("server", "abuser"))]
        out["loop_ran"][phase] = rate(ran.get(phase, {}).get("server_loop"), span)
        out["loop_waited"][phase] = rate(w.get("server_loop"), span)
        out["clients_waited"][phase] = rate(
            None if not clients or None in clients
            else sum(v for v in clients if v is not None), span)
    return out


def _waited(r: dict[str, Any]) -> str:
    if "cpu_wait_s" not in r:
        return "-"
    w = cpu_waits(r)

    def loop(phase: str) -> str:
        return f"{_ms(w['loop_ran'][phase])} + {_ms(w['loop_waited'][phase])}"

    return (f"{loop('calm')} -> {loop('abuse')}; {_ms(w['clients_waited']['calm'])} -> "
            f"{_ms(w['clients_waited']['abuse'])}")


def hostile_report(record: dict[str, Any]) -> str:
    """The markdown table of the last run: one row per abuse."""
    if not record.get("runs"):
        return ""
    details = record["runs"][-1].get("_detail", {})
    lines = [
        "## Hostile clients (one abuse at a time, each against its own server)", "",
        f"Steady load: {STEADY_RATE:,} events/s to {HEALTHY} healthy subscribers "
        f"({record.get('layout')} layout). p99 in ms; probe: another namespace's Publish "
        "round trip and gRPC Health (TCP / unix socket / new TCP connection) during the "
        f"abuse, p99 in ms (issue 9: < {PROBE_TARGET_MS:g}); RSS in MiB, calm peak -> peak "
        "during the abuse; CPU, in milliseconds per second, calm -> during: the server's "
        "event-loop thread ran + waited for a CPU while runnable (1,000 is a saturated "
        "loop), and all the healthy clients' threads (publisher, subscribers, probe) "
        "waited for a CPU (the 2 cores are shared by every process, the abusive one "
        "included).", "",
        "| abuse | what the abusive client got | healthy p99 calm -> during (x) | lost | "
        "ended | other-ns publish p99 / max | Health p99 tcp / unix / new conn | RSS | "
        "CPU ms/s: server loop ran + waited; healthy clients waited | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in details.items():
        if r.get("error"):
            lines.append(f"| {name} | harness error: {r['error'].replace('|', '/')} | - | - | "
                         "- | - | - | - | - | NOT RUN |")
            continue
        p = r["probe"]
        ratio = r["p99_ratio"]
        rss = r["rss"]
        verdict = "PASS" if r["within_target"] else "MISS"
        if r.get("control"):
            verdict = f"control (would {'pass' if r['within_target'] else 'miss'})"
        if r.get("server_exit") is not None:
            verdict += f" (server exited {r['server_exit']})"
        if not r["probe_within_target"]:
            verdict += f"; probe >= {PROBE_TARGET_MS:g} ms"
        got = r["got"].replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {name} | {got} | {_ms(r['calm']['latency_ms'].get('p99'))} -> "
            f"{_ms(r['during']['latency_ms'].get('p99'))} "
            f"({'-' if ratio is None else f'{ratio:.2f}'}) | {r['lost']:,} | "
            f"{_ended(r)} | {_ms(p['publish']['abuse'].get('p99'))} / "
            f"{_ms(p['publish']['abuse'].get('max'))} | "
            f"{_ms(p['health_tcp']['abuse'].get('p99'))} / "
            f"{_ms(p['health_unix']['abuse'].get('p99'))} / "
            f"{_ms(p['health_new_conn']['abuse'].get('p99'))} | "
            f"{rss['calm_peak'] / 2**20:.0f} -> {rss['abuse_peak'] / 2**20:.0f} | "
            f"{_waited(r)} | {verdict} |")
    return "\n".join(lines) + "\n"

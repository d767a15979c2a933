"""``broadcaster serve``: run the server until SIGTERM or SIGINT, then stop gracefully."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from .._config_file import (
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    FileConfig,
    load_config,
    parse_config,
)
from .._core._errors import BroadcasterError, InvalidArgument
from .._gc import tune_gc
from ._workers import serve_command, supervise, worker_config

__all__ = ["add_parser", "configure_logging", "process_registry", "run"]

logger = logging.getLogger("broadcaster.cli")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the broadcaster server",
        description="Run the broadcaster gRPC server (broadcaster.v1, containerd events, "
        "health, reflection) until SIGTERM/SIGINT, then shut down gracefully. Command-line "
        "flags override the configuration file.",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="TOML configuration file (see examples/broadcaster.toml)")
    parser.add_argument("--listen", action="append", metavar="ADDR",
                        help="address to serve on: HOST:PORT or unix:PATH; repeatable "
                        "(default 127.0.0.1:50051)")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="serve Prometheus /metrics and /healthz over HTTP here")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default info)")
    parser.add_argument("--log-format", choices=LOG_FORMATS,
                        help="text (key=value) or json lines (default text)")
    parser.add_argument("--heartbeat-interval", type=float, metavar="SECONDS",
                        help="seconds between heartbeats to subscribers (default 10)")
    parser.add_argument("--max-missed-heartbeats", type=int, metavar="N",
                        help="unanswered heartbeats before a subscriber is evicted (default 3)")
    parser.add_argument("--grace-period", type=float, metavar="SECONDS",
                        help="time in-flight RPCs get on shutdown (default 5)")
    parser.add_argument("--max-subscriptions-per-stream", type=int, metavar="N",
                        help="live subscriptions on one Subscribe stream (default 1000)")
    parser.add_argument("--batch-linger", type=float, metavar="SECONDS",
                        help="least seconds between two writes of a Subscribe stream "
                             "(default 0.002)")
    parser.add_argument("--batch-max-events", type=int, metavar="N",
                        help="deliveries per EventBatch message (default 4096)")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="open connections per TCP address; more are closed at once "
                        "(default 4096, lowered to fit the open-file limit; 0: only that "
                        "limit)")
    parser.add_argument("--max-rpcs-per-peer", type=int, metavar="N",
                        help="RPCs open at once from one client address over TCP "
                        "(default 10000; 0: no bound)")
    parser.add_argument("--max-connection-idle", type=float, metavar="SECONDS",
                        help="close connections without RPCs after this long (default 300; "
                        "0: never)")
    security = parser.add_argument_group(
        "security", "TLS, authentication and the access policy (docs/security.md); the "
        "files are reloaded on SIGHUP and when they change")
    security.add_argument("--policy-file", metavar="FILE",
                          help="access policy and limits per identity (TOML, see "
                          "examples/policy.toml); default: every caller may do everything")
    security.add_argument("--token-file", metavar="FILE",
                          help="SHA-256 hashes of bearer tokens and their identities "
                          "(`broadcaster token` makes them); TCP listeners then require a "
                          "token unless they use client certificates")
    security.add_argument("--tls-cert", metavar="FILE",
                          help="server certificate chain (PEM): TCP listeners serve TLS")
    security.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    security.add_argument("--tls-client-ca", metavar="FILE",
                          help="CA certificates (PEM) client certificates must chain to: TCP "
                          "listeners require one (mTLS) and take the caller's identity from it")
    security.add_argument("--insecure", action="store_true", default=None,
                          help="serve non-loopback TCP addresses and metrics without TLS or "
                          "authentication (refused otherwise)")
    security.add_argument("--socket-mode", metavar="OCTAL",
                          help="permission bits of the unix sockets (default 0600)")
    security.add_argument("--socket-group", metavar="GROUP",
                          help="group (name or id) given the unix sockets")
    security.add_argument("--metrics-token-file", metavar="FILE",
                          help="hashes of the bearer tokens /metrics accepts (their "
                          "identities' stats permission decides which namespaces they see)")
    log = parser.add_argument_group(
        "event log", "where namespaces' history is kept (default: memory, lost on restart)")
    where = log.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR",
                       help="keep history in an SQLite database in DIR (the local log: "
                       "survives restarts, one node)")
    where.add_argument("--backplane", metavar="nats://HOST:PORT[,nats://...]",
                       help="keep history in NATS JetStream, one stream per namespace (the "
                       "jetstream log: several broadcaster nodes, one history)")
    log.add_argument("--fsync", choices=("always", "batch", "interval"),
                     help="local log: when a publish is acknowledged (default always: "
                     "committed and fsynced)")
    log.add_argument("--replicas", type=int, metavar="N",
                     help="jetstream log: replicas of each namespace's stream (default 1; "
                     "3 in a 3-node NATS cluster)")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True,
                        help="run on uvloop if it is installed (the 'fast' extra; default: "
                        "yes; --no-uvloop: asyncio's own loop)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="server processes sharing the TCP addresses (SO_REUSEPORT), "
                        "each a node of the jetstream log (--backplane); default 1")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gc-threshold", type=int, metavar="N",
                        help="allocations between young garbage collections, after freezing "
                        "start-up objects (default 10000; 0 keeps Python's default 700)")
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    server: dict[str, Any] = {}
    for name in ("listen", "metrics_listen", "grace_period", "max_subscriptions_per_stream",
                 "batch_linger", "batch_max_events", "max_connections", "max_rpcs_per_peer",
                 "max_connection_idle"):
        if getattr(args, name) is not None:
            server[name] = getattr(args, name)
    hub = {name: getattr(args, name) for name in ("heartbeat_interval", "max_missed_heartbeats")
           if getattr(args, name) is not None}
    log: dict[str, Any] = {key: getattr(args, f"log_{key}") for key in ("level", "format")
                           if getattr(args, f"log_{key}") is not None}
    if args.data_dir is not None:
        log["backend"] = "local"
        log["local"] = {"data_dir": args.data_dir}
    if args.backplane is not None:
        log["backend"] = "jetstream"
        log["jetstream"] = {"servers": args.backplane}
    if args.fsync is not None:
        log.setdefault("local", {})["fsync"] = args.fsync
    if args.replicas is not None:
        log.setdefault("jetstream", {})["replicas"] = args.replicas
    process = {key: getattr(args, key) for key in ("gc_threshold", "workers")
               if getattr(args, key) is not None}
    security = {key: getattr(args, attr) for key, attr in (
        ("policy_file", "policy_file"), ("token_file", "token_file"),
        ("tls_cert_file", "tls_cert"), ("tls_key_file", "tls_key"),
        ("tls_client_ca_file", "tls_client_ca"), ("insecure", "insecure"),
        ("socket_mode", "socket_mode"), ("metrics_token_file", "metrics_token_file"),
    ) if getattr(args, attr) is not None}
    if args.socket_group is not None:
        group = args.socket_group
        security["socket_group"] = int(group) if group.isdigit() else group
    return {"server": server, "hub": hub, "log": log, "process": process,
            "security": security}


class _TextFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = "" if worker is None else f"worker={worker} "

    def format(self, record: logging.LogRecord) -> str:
        line = (f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} "
                f"level={record.levelname.lower()} logger={record.name} {self._worker}"
                f"{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": record.created, "level": record.levelname.lower(),
                                 "logger": record.name, "msg": record.getMessage()}
        if self._worker is not None:
            entry["worker"] = self._worker
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str, worker: int | None = None) -> None:
    """Send the ``broadcaster`` loggers to stderr as key=value text or JSON lines (each
    line names the worker, if given)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(worker) if fmt == "json" else _TextFormatter(worker))
    root = logging.getLogger("broadcaster")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def run(args: argparse.Namespace) -> int:
    try:
        overrides = _overrides(args)
        config = load_config(args.config, overrides) if args.config else parse_config(overrides)
    except (ConfigError, OSError) as exc:
        print(f"broadcaster serve: {exc}", file=sys.stderr)
        return 2
    worker = args.worker_index
    configure_logging(config.log_level, config.log_format, worker)
    if worker is not None:
        config = worker_config(config, worker)
    elif config.workers > 1:
        command = serve_command(getattr(args, "argv", None) or sys.argv[1:])
        logger.info("starting workers count=%d", config.workers)
        return anyio.run(supervise, command, config, backend="asyncio")
    _raise_open_files_limit()
    tune_gc(config.gc_threshold)
    options = {"use_uvloop": True} if args.uvloop else {}
    try:
        anyio.run(_serve, config, worker is not None, backend="asyncio",
                  backend_options=options)
    except InvalidArgument as exc:  # a policy, token or certificate file that is not usable
        logger.error("cannot start error=%r", str(exc))
        return 2
    except (OSError, BroadcasterError) as exc:  # BroadcasterError: the log cannot open
        logger.error("cannot start error=%r", str(exc))
        return 1
    return 0


def process_registry() -> CollectorRegistry:
    """A registry with the metrics of this process: ``process_*`` (CPU seconds, resident
    and virtual memory, open and maximum file descriptors, start time), ``python_info``
    and ``python_gc_*`` (collections and collected objects by generation). The server
    adds its own ``broadcaster_*`` metrics to it."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _raise_open_files_limit() -> None:
    """Every connection takes a file descriptor: use all the hard limit allows."""
    from ..grpc._fdlimit import raise_open_files_limit

    before, now, error = raise_open_files_limit()
    if error is not None:
        logger.warning("cannot raise the open-file limit soft=%d error=%r", before, error)
    elif now != before:
        logger.info("open-file limit raised from=%d to=%d", before, now)
    else:
        logger.info("open-file limit soft=%d (already the hard limit)", now)


async def _serve(config: FileConfig, supervised: bool = False) -> None:
    from ..grpc import Server  # grpc is imported only by the commands that need it

    parent = os.getppid()
    # SIGHUP is caught from the start (its default action would end the process): one
    # received while the server starts is applied once it serves
    with anyio.open_signal_receiver(signal.SIGHUP) as hangups:
        async with (Server(config.server, registry=process_registry()) as server,
                    anyio.create_task_group() as tg):
            tg.start_soon(_stop_on_signal, server)
            tg.start_soon(_reload_on_sighup, server, hangups)
            if supervised:
                tg.start_soon(_stop_when_orphaned, server, parent)
            await server.wait_closed()
            tg.cancel_scope.cancel()


async def _reload_on_sighup(server: Any, hangups: AsyncIterator[signal.Signals]) -> None:
    """SIGHUP reloads the policy, token and certificate files (a bad one is refused and
    logged; the one in force stays). The rest of the configuration needs a restart."""
    async for _ in hangups:
        logger.info("signal received signal=SIGHUP: reloading the security files")
        server.reload_security()


async def _stop_when_orphaned(server: Any, parent: int, interval: float = 1.0) -> None:
    """A worker whose supervisor is gone (killed: it had no chance to stop its workers)
    stops, as on SIGTERM."""
    while True:
        await anyio.sleep(interval)
        if os.getppid() != parent:
            break
    logger.warning("supervisor gone pid=%d: stopping", parent)
    await server.stop()


async def _stop_on_signal(server: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("signal received signal=%s", signal.Signals(signum).name)
            await server.stop()
            return

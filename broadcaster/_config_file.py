"""The TOML configuration file of ``broadcaster serve`` (see examples/broadcaster.toml).

Layout::

    [server]            ServerConfig fields (listen, metrics_listen, limits, keepalive...)
    [server.containerd_policy]  Policy of containerd Subscribe streams (kind, max_events,
                        max_bytes; kind disconnect, drop_oldest or drop_newest)
    [security]          SecurityConfig fields (policy_file, token_file, tls_cert_file,
                        tls_key_file, tls_client_ca_file, insecure, socket_mode,
                        socket_group, metrics_token_file, reload_interval,
                        denied_log_interval)
    [security.listeners."ADDR"]  ListenerSecurity of one listen address (tls, auth)
    [log]               level, format (the server's own diagnostics); the event log:
                        backend ("memory", "local", "jetstream"), dedup_window,
                        dedup_max_ids
    [log.local]         data_dir, fsync, fsync_interval, cache_events, cache_bytes, read_chunk
    [log.jetstream]     servers, replicas, stream_prefix, subject_prefix, ack_timeout,
                        connect_timeout, heartbeat, cache_events, cache_bytes, read_chunk,
                        name
    [process]           gc_threshold (see broadcaster.tune_gc; 0 keeps Python's default),
                        workers (server processes on the same addresses; jetstream log)
    [hub]               HubConfig fields (heartbeat_interval, max_namespaces, max_cursors,
                        max_retained_bytes...)
    [defaults]          NamespaceConfig of every namespace not listed below
    [namespaces."k8s.io"]   NamespaceConfig of one namespace (unset keys: from [defaults])
    [*.retention]       Retention (max_events, max_bytes, max_age)
    [*.default_policy]  Policy (kind, max_events, max_bytes, block_timeout, fallback, ...)

Every error names the key: ``namespaces."k8s.io".retention.max_events: must be a
positive integer``. Bounds that can be switched off (``max_connections``,
``max_rpcs_per_peer``, ``max_connection_idle``, ``max_concurrent_rpcs``) take 0 for "no
bound", TOML having no null.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._auth._config import AUTH_MODES, ListenerSecurity, SecurityConfig
from ._core._config import FilterConfig, HubConfig, NamespaceConfig, Retention
from ._core._dedup import DEFAULT_DEDUP_MAX_IDS, DEFAULT_DEDUP_WINDOW
from ._core._durable import FsyncMode
from ._core._errors import BroadcasterError, InvalidArgument
from ._core._policy import Policy, PolicyKind
from ._core._sqlite_store import LocalConfig
from ._core._validation import validate_namespace
from ._gc import DEFAULT_GC_THRESHOLD
from ._jetstream._config import JetStreamConfig
from ._log_backend import BACKENDS, LogConfig
from .grpc._config import CONTAINERD_POLICY_KINDS, ServerConfig, check_address

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ConfigError",
    "FileConfig",
    "load_config",
    "parse_config",
]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


class ConfigError(InvalidArgument):
    """The configuration is invalid; ``field`` is the dotted key at fault."""


@dataclass(frozen=True, slots=True)
class FileConfig:
    """Everything ``broadcaster serve`` needs.

    :ivar server: the server's settings (with the hub's inside)
    :ivar log_level: one of :data:`LOG_LEVELS`
    :ivar log_format: ``text`` (key=value) or ``json`` (one object per line)
    :ivar gc_threshold: passed to :func:`broadcaster.tune_gc` at start-up
    :ivar workers: server processes sharing the TCP addresses (``SO_REUSEPORT``), each a
        node of the same ``jetstream`` log; 1: this process serves alone
    """

    server: ServerConfig
    log_level: str = "info"
    log_format: str = "text"
    gc_threshold: int = DEFAULT_GC_THRESHOLD
    workers: int = 1


Check = Callable[[Any, str], Any]


def _int(minimum: int) -> Check:
    def check(value: Any, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(key, f"must be {what}")
        return value
    return check


def _seconds(value: Any, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ConfigError(key, "must be a positive number of seconds")
    return float(value)


def _or_none(check: Check) -> Check:
    """*check*, with 0 meaning "no bound" (None)."""
    def checked(value: Any, key: str) -> Any:
        if value == 0 and not isinstance(value, bool):
            return None
        return check(value, key)
    return checked


def _fraction(value: Any, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigError(key, "must be a number in [0, 1)")
    return float(value)


def _share(value: Any, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
        raise ConfigError(key, "must be a number in (0, 1]")
    return float(value)


def _number(minimum: float) -> Check:
    def check(value: Any, key: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
            raise ConfigError(key, f"must be a number >= {minimum:g}")
        return float(value)
    return check


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a non-empty string")
    return value


def _choice(choices: tuple[str, ...]) -> Check:
    def check(value: Any, key: str) -> str:
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}")
        return str(value)
    return check


def _address(value: Any, key: str) -> str:
    try:
        return check_address(value, key, unix=False)
    except InvalidArgument as exc:
        raise ConfigError(exc.field, exc.message) from None


def _listen(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "must be a list of HOST:PORT or unix:PATH addresses")
    try:
        return tuple(check_address(a, f"{key}[{i}]", unix=True) for i, a in enumerate(value))
    except InvalidArgument as exc:
        raise ConfigError(exc.field, exc.message) from None


_SERVER: dict[str, Check] = {
    "listen": _listen,
    "metrics_listen": _address,
    "max_receive_message_bytes": _int(1),
    "max_send_message_bytes": _int(1),
    "max_concurrent_rpcs": _or_none(_int(1)),
    "max_concurrent_streams": _int(1),
    "stream_overload_protection": _bool,
    "max_connections": _or_none(_int(1)),
    "reserved_fds": _int(0),
    "max_rpcs_per_peer": _or_none(_int(1)),
    "handshake_timeout": _seconds,
    "max_subscriptions_per_stream": _int(1),
    "publish_batch_max_events": _int(1),
    "batch_max_events": _int(1),
    "batch_max_bytes": _int(1),
    "batch_linger": _number(0),
    "stream_turns_per_tick": _int(1),
    "stream_write_window": _int(0),
    "max_heartbeats_per_second": _int(0),
    "keepalive_time": _seconds,
    "keepalive_timeout": _seconds,
    "keepalive_permit_without_calls": _bool,
    "min_ping_interval": _seconds,
    "max_ping_strikes": _int(0),
    "max_connection_idle": _or_none(_seconds),
    "rpc_error_log_interval": _seconds,
    "grace_period": _seconds,
    "reflection": _bool,
}
def _path(value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a directory path")
    return Path(value)


def _urls(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [u for u in value.split(",") if u]
    if not isinstance(value, list) or not value or not all(isinstance(u, str) for u in value):
        raise ConfigError(key, "must be a list of nats://HOST:PORT URLs")
    for i, url in enumerate(value):
        if not url.startswith(("nats://", "tls://")):
            raise ConfigError(f"{key}[{i}]", f"{url!r} is not a nats://HOST:PORT URL")
    return tuple(value)


_LOG: dict[str, Check] = {
    "level": _choice(LOG_LEVELS), "format": _choice(LOG_FORMATS),
    "backend": _choice(BACKENDS), "dedup_window": _number(0), "dedup_max_ids": _int(1),
}
_LOCAL: dict[str, Check] = {
    "data_dir": _path,
    "fsync": _choice(tuple(m.value for m in FsyncMode)),
    "fsync_interval": _seconds,
    "cache_events": _int(1),
    "cache_bytes": _int(1),
    "read_chunk": _int(1),
}
_JETSTREAM: dict[str, Check] = {
    "servers": _urls,
    "replicas": _int(1),
    "stream_prefix": _string,
    "subject_prefix": _string,
    "ack_timeout": _seconds,
    "connect_timeout": _seconds,
    "heartbeat": _seconds,
    "cache_events": _int(1),
    "cache_bytes": _int(1),
    "read_chunk": _int(1),
    "name": _string,
}
_PROCESS: dict[str, Check] = {"gc_threshold": _int(0), "workers": _int(1)}
_HUB: dict[str, Check] = {
    "heartbeat_interval": _seconds,
    "max_missed_heartbeats": _int(1),
    "callback_timeout": _seconds,
    "overflow_check_interval": _seconds,
    "notify_linger": _number(0),
    "publish_yield_every": _int(1),
    "wake_batch": _int(1),
    "loop_lag_interval": _seconds,
    "max_namespaces": _int(1),
    "namespace_idle_timeout": _seconds,
    "namespace_head_memory": _int(0),
    "max_cursors": _int(1),
    "max_retained_bytes": _int(1),
    "wide_work_share": _share,
    "epoch": _string,
    "seed": _int(0),
}
_FILTERS: dict[str, Check] = {
    **{name: _int(1) for name in FilterConfig.__slots__}, "match_slice": _seconds}
_RETENTION: dict[str, Check] = {
    "max_events": _int(1), "max_bytes": _int(1), "max_age": _seconds,
}
_KINDS = tuple(k.value for k in PolicyKind)
def _kind(choices: tuple[str, ...]) -> Check:
    check = _choice(choices)
    return lambda value, key: PolicyKind(check(value, key))


_POLICY: dict[str, Check] = {
    "kind": _kind(_KINDS),
    "max_events": _int(1),
    "max_bytes": _int(0),
    "block_timeout": _seconds,
    "fallback": _kind(("drop_newest", "drop_oldest", "disconnect")),
    "initial_backoff": _seconds,
    "max_backoff": _seconds,
    "multiplier": _number(1),
    "max_attempts": _int(1),
    "jitter": _fraction,
}
_NAMESPACE: dict[str, Check] = {
    "max_subscriptions": _int(1),
    "max_payload_bytes": _int(1),
    "max_policy_events": _int(1),
    "max_policy_bytes": _int(1),
    "max_publish_rate": _number(0),
    "publish_burst": _int(1),
    "allow_block": _bool,
    "max_block_timeout": _seconds,
}


def _file(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a file path")
    return value


def _mode(value: Any, key: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise ConfigError(key, "must be octal permission bits such as 0o600") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise ConfigError(key, "must be permission bits between 0o000 and 0o777 (write 0o600)")
    return value


def _group(value: Any, key: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "" or (
            isinstance(value, int) and value < 0):
        raise ConfigError(key, "must be a group name or id")
    return value


_SECURITY: dict[str, Check] = {
    "policy_file": _file,
    "token_file": _file,
    "tls_cert_file": _file,
    "tls_key_file": _file,
    "tls_client_ca_file": _file,
    "insecure": _bool,
    "socket_mode": _mode,
    "socket_group": _group,
    "metrics_token_file": _file,
    "reload_interval": _seconds,
    "denied_log_interval": _seconds,
}
_LISTENER: dict[str, Check] = {"tls": _bool, "auth": _choice(AUTH_MODES)}


def _security(table: Mapping[str, Any]) -> SecurityConfig:
    values = _fields(table, _SECURITY, "security", ("listeners",))
    listeners: dict[str, ListenerSecurity] = {}
    for address, item in _table(table.get("listeners", {}), "security.listeners").items():
        key = f'security.listeners."{address}"'
        listeners[address] = ListenerSecurity(**_fields(_table(item, key), _LISTENER, key))
    try:
        return SecurityConfig(listeners=listeners, **values)
    except BroadcasterError as exc:
        raise ConfigError(exc.field, exc.message) from None


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    return value


def _fields(table: Mapping[str, Any], spec: Mapping[str, Check], prefix: str,
            nested: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}.{_quote(key)}"
        if key in nested:
            continue
        check = spec.get(key)
        if check is None:
            raise ConfigError(path, f"unknown key (expected one of {', '.join(spec)})")
        out[key] = check(value, path)
    return out


def _quote(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


_CONTAINERD_POLICY: dict[str, Check] = {
    "kind": _kind(tuple(k.value for k in CONTAINERD_POLICY_KINDS)),
    "max_events": _int(1),
    "max_bytes": _int(0),
}


def _containerd_policy(value: Any, key: str) -> Policy:
    values = _fields(_table(value, key), _CONTAINERD_POLICY, key)
    kind = values.pop("kind", PolicyKind.DISCONNECT)
    try:
        return Policy(kind, **values).validated()
    except BroadcasterError as exc:
        raise ConfigError(f"{key}.{exc.field.removeprefix('policy.')}", exc.message) from None


def _namespace(table: Mapping[str, Any], prefix: str, base: NamespaceConfig) -> NamespaceConfig:
    fields = _fields(table, _NAMESPACE, prefix, ("retention", "default_policy"))
    retention = base.retention
    if "retention" in table:
        path = f"{prefix}.retention"
        values = _fields(_table(table["retention"], path), _RETENTION, path)
        retention = Retention(**{**_asdict(retention), **values})
    policy = base.default_policy
    if "default_policy" in table:
        path = f"{prefix}.default_policy"
        values = _fields(_table(table["default_policy"], path), _POLICY, path)
        try:
            policy = Policy(**{**_asdict(policy), **values}).validated()
        except BroadcasterError as exc:
            raise ConfigError(f"{path}.{exc.field.removeprefix('policy.')}",
                              exc.message) from None
    merged = {**_asdict(base), **fields, "retention": retention, "default_policy": policy}
    config = NamespaceConfig(**merged)
    try:
        config.check_policy(config.default_policy)
    except BroadcasterError as exc:
        raise ConfigError(f"{prefix}.default_{exc.field}", exc.message) from None
    return config


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def parse_config(data: Mapping[str, Any]) -> FileConfig:
    """Build the configuration from parsed TOML *data* (missing keys take defaults).

    :raises ConfigError: naming the dotted key at fault
    """
    known = ("server", "security", "log", "process", "hub", "filters", "defaults", "namespaces")
    for key in data:
        if key not in known:
            raise ConfigError(_quote(key), f"unknown section (expected one of {', '.join(known)})")
    server_table = _table(data.get("server", {}), "server")
    server = _fields(server_table, _SERVER, "server", ("containerd_policy",))
    if "containerd_policy" in server_table:
        server["containerd_policy"] = _containerd_policy(
            server_table["containerd_policy"], "server.containerd_policy")
    security = _security(_table(data.get("security", {}), "security"))
    log_table = _table(data.get("log", {}), "log")
    log = _fields(log_table, _LOG, "log", ("local", "jetstream"))
    process = _fields(_table(data.get("process", {}), "process"), _PROCESS, "process")
    hub = _fields(_table(data.get("hub", {}), "hub"), _HUB, "hub")
    filters = FilterConfig(**_fields(_table(data.get("filters", {}), "filters"), _FILTERS,
                                     "filters"))
    defaults = _namespace(_table(data.get("defaults", {}), "defaults"), "defaults",
                          NamespaceConfig())
    namespaces: dict[str, NamespaceConfig] = {}
    for name, table in _table(data.get("namespaces", {}), "namespaces").items():
        path = f"namespaces.{_quote(name)}"
        try:
            validate_namespace(name, path)
        except BroadcasterError as exc:
            raise ConfigError(exc.field, exc.message) from None
        namespaces[name] = _namespace(_table(table, path), path, defaults)
    hub_config = HubConfig(default_namespace=defaults, namespaces=namespaces, filters=filters,
                           **hub)
    log_config = _log_config(log, log_table)
    try:
        server_config = ServerConfig(hub=hub_config, log=log_config, security=security,
                                     **server)
    except BroadcasterError as exc:
        field = exc.field
        if not field.startswith("security."):
            field = f"server.{field}"
        raise ConfigError(field, exc.message) from None
    workers = process.get("workers", 1)
    if workers > 1:
        _check_workers(server_config)
    return FileConfig(server_config, log.get("level", "info"), log.get("format", "text"),
                      process.get("gc_threshold", DEFAULT_GC_THRESHOLD), workers)


def _check_workers(server: ServerConfig) -> None:
    """Several worker processes: they share events only through JetStream, and every
    one binds the same TCP ports (a port 0 would give each its own)."""
    if server.log.backend != "jetstream":
        raise ConfigError("process.workers", "worker processes share events only through "
                          "the jetstream log: set --backplane (or [log] backend = "
                          f"\"jetstream\"); the {server.log.backend} log serves one process")
    tcp = server.tcp_addresses()
    if not tcp:
        raise ConfigError("process.workers", "worker processes share TCP addresses: listen "
                          "on at least one HOST:PORT")
    for i, address in enumerate(server.listen):
        if not address.startswith("unix:") and address.rsplit(":", 1)[1] == "0":
            raise ConfigError(f"server.listen[{i}]", "port 0 would give each worker a port "
                              "of its own: name the port the workers share")
    metrics = server.metrics_listen
    if metrics is not None and metrics.rsplit(":", 1)[1] == "0":
        raise ConfigError("server.metrics_listen", "port 0 cannot be shared out: worker i "
                          "serves /metrics on PORT + i, name PORT")


def _log_config(log: Mapping[str, Any], table: Mapping[str, Any]) -> LogConfig:
    """The event log of ``[log]``, ``[log.local]`` and ``[log.jetstream]``."""
    local_values = _fields(_table(table.get("local", {}), "log.local"), _LOCAL, "log.local")
    js_values = _fields(_table(table.get("jetstream", {}), "log.jetstream"), _JETSTREAM,
                        "log.jetstream")
    backend = log.get("backend", "memory")
    try:
        local = None
        if "data_dir" in local_values:
            local = LocalConfig(**local_values)
        elif backend == "local":
            raise ConfigError("log.local.data_dir", "the local log needs a data directory "
                              "(--data-dir DIR)")
        jetstream = JetStreamConfig(**js_values)
        return LogConfig(backend, local=local, jetstream=jetstream,
                         dedup_window=log.get("dedup_window", DEFAULT_DEDUP_WINDOW),
                         dedup_max_ids=log.get("dedup_max_ids", DEFAULT_DEDUP_MAX_IDS))
    except ConfigError:
        raise
    except BroadcasterError as exc:
        field = exc.field
        if not field.startswith("log."):
            section = "local" if field in _LOCAL else "jetstream"
            field = f"log.{section}.{'servers' if field == 'backplane' else field}"
        raise ConfigError(field, exc.message) from None


def load_config(path: str | Path, overrides: Mapping[str, Mapping[str, Any]] | None = None
                ) -> FileConfig:
    """Read the TOML file at *path*, apply *overrides* (``{"server": {"listen": [...]}}``,
    as the command line gives them) and build the configuration.

    :raises ConfigError: naming the key at fault, or the file if it is not valid TOML
    :raises OSError: if the file cannot be read
    """
    with open(path, "rb") as file:
        try:
            data = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(merge_overrides(data, overrides or {}))


def merge_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """*data* with each section updated by *overrides*, tables merged key by key at any
    depth (``{"log": {"local": {"data_dir": ...}}}`` keeps the file's other keys)."""
    merged: dict[str, Any] = dict(data)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_overrides(current, value)
        elif isinstance(value, Mapping):
            merged[key] = merge_overrides({}, value)
        else:
            merged[key] = value
    return merged

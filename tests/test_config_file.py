"""The TOML configuration of `broadcaster serve`: every key, defaults, errors naming keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broadcaster import FilterConfig, Policy, PolicyKind
from broadcaster._auth import ListenerSecurity
from broadcaster._config_file import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "broadcaster.toml"


def test_example_file_loads_every_documented_key() -> None:
    config = load_config(EXAMPLE)
    server = config.server
    assert server.listen == ("127.0.0.1:50051",)
    assert server.metrics_listen == "127.0.0.1:9464"
    assert server.max_concurrent_rpcs == 10000 and server.max_connection_idle == 300.0
    assert (server.max_connections, server.reserved_fds, server.max_rpcs_per_peer) == \
        (4096, 1024, 10_000)
    assert server.handshake_timeout == 10.0 and not server.stream_overload_protection
    assert server.publish_batch_max_events == 10_000
    assert server.rpc_error_log_interval == 10.0 and server.stream_turns_per_tick == 16
    assert server.containerd_policy == Policy.disconnect(4096)
    assert (config.log_level, config.log_format) == ("info", "text")
    assert config.gc_threshold == 10_000
    k8s = server.hub.namespace("k8s.io")
    assert k8s.retention.max_events == 500_000
    assert k8s.retention.max_age == 3600.0  # inherited from [defaults.retention]
    assert k8s.default_policy.kind is PolicyKind.BLOCK
    assert k8s.default_policy.block_timeout == 0.5
    assert k8s.max_publish_rate == 20000.0
    assert server.hub.namespace("other").default_policy.kind is PolicyKind.DROP_OLDEST
    assert server.hub.filters == FilterConfig()  # the example shows the defaults
    hub = server.hub
    assert (hub.wake_batch, hub.loop_lag_interval) == (256, 0.1)
    assert (hub.namespace_idle_timeout, hub.namespace_head_memory) == (300.0, 10_000)
    assert (hub.max_cursors, hub.max_retained_bytes) == (250_000, 512 * 1024 * 1024)
    assert hub.wide_work_share == 0.25
    assert (k8s.allow_block, k8s.max_block_timeout) == (True, 5.0)
    security = server.security
    assert security.policy_file == "examples/policy.toml" and security.token_file is None
    assert (security.socket_mode, security.insecure) == (0o600, False)
    assert (security.reload_interval, security.denied_log_interval) == (2.0, 60.0)
    log = server.log
    assert (log.backend, log.dedup_window, log.dedup_max_ids) == ("memory", 120.0, 100_000)
    assert log.local is not None and log.local.data_dir == Path("/var/lib/broadcaster")
    assert (log.local.fsync, log.local.fsync_interval) == ("always", 0.05)
    assert log.jetstream.servers == ("nats://127.0.0.1:4222",)
    assert (log.jetstream.replicas, log.jetstream.ack_timeout) == (1, 5.0)


def test_empty_config_gives_defaults() -> None:
    config = parse_config({})
    assert config.server.listen == ("127.0.0.1:50051",)
    assert config.server.metrics_listen is None
    assert config.server.containerd_policy is None
    assert config.server.containerd_subscribe_policy() == Policy.disconnect(4096)


def test_zero_switches_a_bound_off() -> None:
    server = parse_config({"server": {
        "max_connections": 0, "max_rpcs_per_peer": 0, "max_connection_idle": 0,
        "max_concurrent_rpcs": 0}}).server
    assert server.max_connections is None and server.max_rpcs_per_peer is None
    assert server.max_connection_idle is None and server.max_concurrent_rpcs is None
    assert ("grpc.max_connection_idle_ms", 300_000) not in server.grpc_options()


def test_containerd_policy_table() -> None:
    server = parse_config({"server": {"containerd_policy": {
        "kind": "drop_oldest", "max_events": 100}}}).server
    assert server.containerd_subscribe_policy() == Policy.drop_oldest(100)
    # The default bound fits the smallest namespace limit.
    small = parse_config({"defaults": {"max_policy_events": 50, "default_policy": {
        "max_events": 10}}}).server
    assert small.containerd_subscribe_policy() == Policy.disconnect(50)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:1"]\ngrace_period = 3.0\n')
    config = load_config(path, {"server": {"listen": ["unix:/tmp/x.sock"]},
                                "hub": {"heartbeat_interval": 0.5}})
    assert config.server.listen == ("unix:/tmp/x.sock",)
    assert config.server.grace_period == 3.0
    assert config.server.hub.heartbeat_interval == 0.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"namespaces": {"k8s.io": {"retention": {"max_events": 0}}}},
         'namespaces."k8s.io".retention.max_events: must be a positive integer'),
        ({"namespaces": {"Bad Name": {}}}, 'namespaces."Bad Name":'),
        ({"server": {"listen": ["nope"]}}, "server.listen[0]:"),
        ({"server": {"listen": []}}, "server.listen:"),
        ({"server": {"metrics_listen": "unix:/x"}}, "server.metrics_listen:"),
        ({"server": {"bogus": 1}}, "server.bogus: unknown key"),
        ({"server": {"grace_period": -1}}, "server.grace_period: must be a positive"),
        ({"server": {"reflection": "yes"}}, "server.reflection: must be true or false"),
        ({"server": {"batch_linger": 5}}, "server.batch_linger:"),
        ({"hub": {"heartbeat_interval": 0}}, "hub.heartbeat_interval:"),
        ({"log": {"level": "loud"}}, "log.level: must be one of"),
        ({"process": {"gc_threshold": -1}}, "process.gc_threshold: must be an integer >= 0"),
        ({"defaults": {"default_policy": {"kind": "fast"}}}, "defaults.default_policy.kind:"),
        ({"defaults": {"default_policy": {"kind": "retry", "max_backoff": 0.001}}},
         "defaults.default_policy.max_backoff:"),
        ({"defaults": {"max_policy_events": 10, "default_policy": {"max_events": 20}}},
         "defaults.default_policy.max_events:"),
        ({"hub": {"max_cursors": 0}}, "hub.max_cursors: must be a positive integer"),
        ({"hub": {"wide_work_share": 0}}, "hub.wide_work_share: must be a number in (0, 1]"),
        ({"hub": {"wide_work_share": 1.5}}, "hub.wide_work_share: must be a number in"),
        ({"hub": {"namespace_idle_timeout": 0}}, "hub.namespace_idle_timeout: must be a pos"),
        ({"defaults": {"max_block_timeout": -1}}, "defaults.max_block_timeout: must be a pos"),
        ({"defaults": {"allow_block": False, "default_policy": {"kind": "block"}}},
         "defaults.default_policy.kind: block is not allowed"),
        ({"namespaces": {"a": {"max_block_timeout": 0.5,
                               "default_policy": {"kind": "block", "block_timeout": 1.0}}}},
         'namespaces.a.default_policy.block_timeout: 1 s exceeds the maximum of 0.5 s'),
        ({"extra": {}}, "extra: unknown section"),
        ({"filters": {"max_filters": 0}}, "filters.max_filters: must be a positive integer"),
        ({"filters": {"max_filterz": 1}}, "filters.max_filterz: unknown key"),
        ({"server": {"max_connections": -1}}, "server.max_connections: must be a positive"),
        ({"server": {"reserved_fds": -1}}, "server.reserved_fds: must be an integer >= 0"),
        ({"server": {"handshake_timeout": 0}}, "server.handshake_timeout: must be a positive"),
        ({"server": {"publish_batch_max_events": 0}}, "server.publish_batch_max_events:"),
        ({"server": {"containerd_policy": {"kind": "block"}}},
         "server.containerd_policy.kind: must be one of disconnect, drop_oldest, drop_newest"),
        ({"server": {"containerd_policy": {"max_events": 0}}},
         "server.containerd_policy.max_events: must be a positive integer"),
        ({"server": {"containerd_policy": {"jitter": 0.1}}},
         "server.containerd_policy.jitter: unknown key"),
        ({"defaults": {"max_policy_events": 10, "default_policy": {"max_events": 10}},
          "server": {"containerd_policy": {"max_events": 20}}},
         "server.containerd_policy.max_events: 20 exceeds 10 (the limit of namespace defaults)"),
        ({"namespaces": {"a": 1}}, "namespaces.a: must be a table"),
        ({"log": {"backend": "disk"}}, "log.backend: must be one of memory, local, jetstream"),
        ({"log": {"backend": "local"}}, "log.local.data_dir: the local log needs a data dir"),
        ({"log": {"local": {"fsync": "sometimes"}}}, "log.local.fsync: must be one of always"),
        ({"log": {"local": {"data_dir": "/x", "fsync_interval": 0}}},
         "log.local.fsync_interval: must be a positive"),
        ({"log": {"local": {"dir": "/x"}}}, "log.local.dir: unknown key"),
        ({"log": {"jetstream": {"servers": ["http://x:1"]}}},
         "log.jetstream.servers[0]: 'http://x:1' is not a nats://"),
        ({"log": {"jetstream": {"replicas": 7}}}, "log.jetstream.replicas: must be between 1"),
        ({"log": {"dedup_window": -1}}, "log.dedup_window: must be a number >= 0"),
        ({"log": {"dedup_max_ids": 0}}, "log.dedup_max_ids: must be a positive integer"),
    ],
)
def test_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message), str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_gc_threshold_from_the_command_line_wins(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[process]\ngc_threshold = 1000\n")
    assert load_config(path).gc_threshold == 1000
    assert load_config(path, {"process": {"gc_threshold": 0}}).gc_threshold == 0


def test_security_section() -> None:
    config = parse_config({
        "server": {"listen": ["0.0.0.0:50051", "unix:/run/b.sock"]},
        "security": {"tls_cert_file": "c.pem", "tls_key_file": "k.pem",
                     "tls_client_ca_file": "ca.pem", "token_file": "tokens",
                     "socket_mode": "0660", "socket_group": "broadcaster",
                     "listeners": {"unix:/run/b.sock": {"auth": "token"}}},
    })
    security = config.server.security
    assert security.socket_mode == 0o660 and security.socket_group == "broadcaster"
    assert security.listener("0.0.0.0:50051") == ListenerSecurity(tls=True, auth="mtls")
    assert security.listener("unix:/run/b.sock") == ListenerSecurity(auth="token")


@pytest.mark.parametrize(("data", "message"), [
    ({"server": {"listen": ["0.0.0.0:1"]}},
     r"^server\.listen\[0\]: '0\.0\.0\.0:1' is not a loopback address"),
    ({"server": {"metrics_listen": "0.0.0.0:9464"}},
     r"^server\.metrics_listen: '0\.0\.0\.0:9464' is not a loopback address"),
    ({"security": {"socket_mode": 0o1000}}, r"^security\.socket_mode: must be permission bits"),
    ({"security": {"socket_mode": "rw"}}, r"^security\.socket_mode: must be octal"),
    ({"security": {"tls_cert_file": "c"}}, r"^security\.tls_key_file: the certificate and"),
    ({"security": {"listeners": {"127.0.0.1:9": {"auth": "password"}}}},
     r'^security\.listeners\."127\.0\.0\.1:9"\.auth: must be one of none, token, mtls'),
    ({"security": {"listeners": {"127.0.0.1:9": {}}}},
     r'^security\.listeners\."127\.0\.0\.1:9": is not one of the listen addresses'),
    ({"security": {"polcy_file": "x"}}, r"^security\.polcy_file: unknown key"),
])
def test_security_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_insecure_serves_any_address() -> None:
    config = parse_config({"server": {"listen": ["0.0.0.0:1"], "metrics_listen": "[::]:2"},
                           "security": {"insecure": True}})
    assert config.server.listen == ("0.0.0.0:1",)
def test_log_backends_from_the_file_and_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[log]\nbackend = "local"\ndedup_window = 30\n'
                    '[log.local]\ndata_dir = "/srv/b"\nfsync = "batch"\n'
                    '[log.jetstream]\nservers = ["nats://n1:4222", "nats://n2:4222"]\n'
                    'replicas = 3\n')
    log = load_config(path).server.log
    assert log.backend == "local" and log.local is not None
    assert (log.local.data_dir, log.local.fsync, log.dedup_window) == (Path("/srv/b"), "batch",
                                                                        30.0)
    # what `--backplane` and `--replicas` give: the file's other keys stay
    js = load_config(path, {"log": {"backend": "jetstream",
                                    "jetstream": {"servers": "nats://a:1,nats://b:2"}}})
    log = js.server.log
    assert log.backend == "jetstream"
    assert log.jetstream.servers == ("nats://a:1", "nats://b:2")
    assert log.jetstream.replicas == 3
    # `--data-dir` over a file without [log.local]
    local = parse_config({"log": {"backend": "local", "local": {"data_dir": str(tmp_path)}}})
    assert local.server.log.local is not None
    assert local.server.log.local.data_dir == tmp_path

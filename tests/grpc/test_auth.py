"""Authentication and authorization over real connections: mTLS with trustme
certificates, bearer tokens, unix socket peers as ``local``; the policy applied on both
APIs and every method; reloads; per-identity limits; /metrics."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest

from broadcaster._auth import ListenerSecurity, SecurityConfig, new_token, token_line
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from .._certs import Authority
from ._helpers import add, code_of, list_services, publish, read_events, read_kind, stub, wait_until
from .conftest import MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

PUBLISHER = "spiffe://example.org/ns/a/sa/publisher"

POLICY = f"""
[identities.local]
admin = ["*"]

[identities."{PUBLISHER}"]
publish = ["a"]
create = ["a"]

[identities.reader-c]
subscribe = ["c"]
stats = ["c"]

[identities.watcher]
subscribe = ["a", "w*"]
stats = ["a"]

[identities.noisy]
publish = ["shared"]
create = ["shared"]

[identities.quiet]
publish = ["shared"]
create = ["shared"]

[identities.prometheus]
stats = ["a"]

[limits.noisy]
publish_rate = 0.001
publish_burst = 50

[limits.quiet]
publish_rate = 0.001
publish_burst = 50

[limits.watcher]
max_streams = 2
max_subscriptions = 3
new_namespaces_per_minute = 2
"""

IDENTITIES = ("reader-c", "watcher", "noisy", "quiet")


@dataclass
class Setup:
    server: Server
    tcp: str  # mTLS listener
    token_tcp: str  # token listener
    unix: str
    ca: Authority
    tokens: dict[str, str]
    policy: Path
    metrics_token: str

    def mtls(self, pair: Any) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(self.ca.ca_pem, pair.key, pair.cert)
        return grpc.aio.secure_channel(self.tcp, creds)

    def token_channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.token_tcp)

    def bearer(self, identity: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.tokens[identity]}"),)


@pytest.fixture
async def setup(make_server: MakeServer, tmp_path: Path) -> AsyncIterator[Setup]:
    ca = Authority(tmp_path / "pki")
    server_pair = ca.server()
    tokens = {identity: new_token() for identity in IDENTITIES}
    token_file = tmp_path / "tokens"
    token_file.write_text("".join(token_line(t, i) + "\n" for i, t in tokens.items()))
    metrics_token = new_token()
    metrics_tokens = tmp_path / "metrics-tokens"
    metrics_tokens.write_text(token_line(metrics_token, "prometheus") + "\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    sock = f"unix:{tmp_path / 'b.sock'}"
    security = SecurityConfig(
        policy_file=str(policy), token_file=str(token_file),
        tls_cert_file=str(server_pair.cert_file), tls_key_file=str(server_pair.key_file),
        tls_client_ca_file=str(ca.ca_file), metrics_token_file=str(metrics_tokens),
        reload_interval=0.05,
        listeners={"127.0.0.2:0": ListenerSecurity(tls=False, auth="token")})
    server = await make_server(listen=["127.0.0.1:0", "127.0.0.2:0", sock],
                               metrics_listen="127.0.0.1:0", security=security)
    yield Setup(server, server.addresses[0], server.addresses[1], server.addresses[2], ca,
                tokens, policy, metrics_token)



async def test_a_certificate_allowed_only_publish_on_a(setup: Setup) -> None:
    pair = setup.ca.spiffe_client(PUBLISHER)
    async with setup.mtls(pair) as channel, \
            grpc.aio.insecure_channel(setup.unix) as local:
        assert (await publish(channel, "a", "/x")).sequence == 1
        await publish(local, "b", "/x")  # b exists (created by local)
        code, details = await code_of(publish(channel, "b", "/x"))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert details == (f"namespace: identity '{PUBLISHER}' lacks permission 'publish' "
                           "on namespace 'b'")
        # cannot subscribe to a, nor see a or b in an all-namespaces subscription
        call = stub(channel).Subscribe()
        await call.write(add("named", ("a",)))
        result = await read_kind(call, "add_result")
        assert not result.ok and result.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert result.error.message == (f"namespaces[0]: identity '{PUBLISHER}' lacks "
                                        "permission 'subscribe' on namespace 'a'")
        await call.write(add("all"))
        result = await read_kind(call, "add_result")
        assert not result.ok and result.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert "lacks permission 'subscribe' on any namespace" in result.error.message
        call.cancel()
        # Stats: neither a nor b
        stats = await stub(channel).Stats(pb.StatsRequest(), timeout=5)
        assert [ns.namespace for ns in stats.namespaces] == []
        code, details = await code_of(stub(channel).Stats(
            pb.StatsRequest(namespaces=["a"]), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED and "'stats' on namespace 'a'" in details
        # containerd's Subscribe (every namespace by default)
        events = events_pb2_grpc.EventsStub(channel)
        code, details = await code_of(events.Subscribe(events_pb2.SubscribeRequest(),
                                                       timeout=5).read())
        assert code is grpc.StatusCode.PERMISSION_DENIED
        # containerd's Publish and Forward into b
        code, details = await code_of(events.Publish(
            events_pb2.PublishRequest(topic="/x"), metadata=(("containerd-namespace", "b"),),
            timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert details.startswith("containerd-namespace: identity")
        envelope = events_pb2.Envelope(namespace="b", topic="/x")
        envelope.timestamp.seconds = 1_000_000_000
        code, details = await code_of(events.Forward(
            events_pb2.ForwardRequest(envelope=envelope), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert details.startswith("envelope.namespace: identity")
        # creating a namespace it may not create
        code, details = await code_of(publish(channel, "a2", "/x"))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "'publish' on namespace 'a2'" in details
    denied = {s.labels["reason"]: s.value for s in _samples(setup.server,
                                                            "broadcaster_auth_denied_total")}
    assert denied["publish"] == 4 and denied["subscribe"] == 3 and denied["stats"] == 1


def _samples(server: Server, name: str) -> list[Any]:
    return [s for family in server.registry.collect() for s in family.samples
            if s.name == name]


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_all_namespaces_subscriptions_see_only_readable_namespaces(
        setup: Setup) -> None:
    async with setup.token_channel() as channel, \
            grpc.aio.insecure_channel(setup.unix) as local:
        for ns in ("a", "b", "c"):
            await publish(local, ns, "/before")
        call = stub(channel).Subscribe(metadata=setup.bearer("reader-c"))
        await call.write(add("all", ()))
        result = await read_kind(call, "add_result")
        assert result.ok and dict(result.start_sequences) == {"c": 1}  # c only
        for ns in ("a", "b", "c", "d", "c"):  # d created later, not readable either
            await publish(local, ns, "/after")
        got = [(e.namespace, e.sequence) for _, e in await read_events(call, 2)]
        assert got == [("c", 2), ("c", 3)]
        stats = await stub(channel).Stats(pb.StatsRequest(), metadata=setup.bearer("reader-c"),
                                          timeout=5)
        assert [ns.namespace for ns in stats.namespaces] == ["c"]
        # containerd's Subscribe sees c only, including events published later
        events = events_pb2_grpc.EventsStub(channel)
        envelopes = events.Subscribe(events_pb2.SubscribeRequest(),
                                     metadata=setup.bearer("reader-c"))
        await wait_until(lambda: setup.server.hub.statistics().namespaces["c"].subscribers == 2)
        for ns in ("a", "b", "c"):
            await publish(local, ns, "/containerd")
        envelope = await envelopes.read()
        assert (envelope.namespace, envelope.topic) == ("c", "/containerd")
        envelopes.cancel()
        call.cancel()


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_tokens_are_required_where_configured(setup: Setup) -> None:
    async with setup.token_channel() as channel:
        code, details = await code_of(publish(channel, "shared", "/x"))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert details == ("authorization: this listener requires a bearer token (metadata "
                           "'authorization: Bearer <token>')")
        code, details = await code_of(stub(channel).Publish(
            pb.PublishRequest(namespace="shared", topic="/x"),
            metadata=(("authorization", f"Bearer {new_token()}"),), timeout=5))
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED,
                                   "authorization: the bearer token is not valid")
        assert (await stub(channel).Publish(
            pb.PublishRequest(namespace="shared", topic="/x"),
            metadata=setup.bearer("quiet"), timeout=5)).sequence == 1
        # Health is open to every caller the listener admits
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        # reflection needs admin on *
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            metadata=setup.bearer("quiet"))
        # the refusal may end the call before the request is written: the write
        # then raises it, rather than the read
        code, details = await code_of(list_services(reflect))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert details.endswith("lacks permission 'admin' on the server")
    async with grpc.aio.insecure_channel(setup.unix) as local:  # local has admin on *
        reflect = reflection_pb2_grpc.ServerReflectionStub(local).ServerReflectionInfo()
        await reflect.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        response = await reflect.read()
        assert "broadcaster.v1.Broadcaster" in [
            s.name for s in response.list_services_response.service]
        await reflect.done_writing()


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_one_identity_at_its_rate_does_not_slow_another(setup: Setup) -> None:
    """Per identity: noisy exhausts its own bucket publishing into "shared"; quiet, into
    the same namespace, gets every one of its events through (the per-namespace rate
    limit used to be shared: a noisy publisher caused 45 of 50 rejections for a quiet
    one)."""
    async with setup.token_channel() as channel:
        noisy_rejected = 0
        for _ in range(100):
            code, details = await code_of(stub(channel).Publish(
                pb.PublishRequest(namespace="shared", topic="/n"),
                metadata=setup.bearer("noisy"), timeout=5))
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                noisy_rejected += 1
                assert details.startswith("limits.publish_rate: identity 'noisy': publish "
                                          "rate of 0.001 events/s (burst 50) exhausted")
        assert noisy_rejected == 50
        for _ in range(50):
            await stub(channel).Publish(pb.PublishRequest(namespace="shared", topic="/q"),
                                        metadata=setup.bearer("quiet"), timeout=5)
    rejected = {s.labels["reason"]: s.value for s in _samples(
        setup.server, "broadcaster_grpc_rejected_total")}
    assert rejected["identity_publish_rate"] == 50


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_stream_subscription_and_namespace_limits(setup: Setup) -> None:
    async with grpc.aio.insecure_channel(setup.unix) as local:
        await publish(local, "a", "/x")  # exists: subscribing to it creates nothing
    async with setup.token_channel() as channel:
        meta = setup.bearer("watcher")
        first = stub(channel).Subscribe(metadata=meta)
        second = stub(channel).Subscribe(metadata=meta)
        for call in (first, second):
            await call.write(add("x", ("a",)))
            assert (await read_kind(call, "add_result")).ok
        third = stub(channel).Subscribe(metadata=meta)
        code, details = await code_of(third.read())
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == ("limits.max_streams: identity 'watcher': has 2 streams open, its "
                           "limit (max_streams); close one or multiplex subscriptions on one "
                           "stream")
        # 2 subscriptions so far, at most 3; two new namespaces a minute
        await first.write(add("w1", ("w1",)))
        assert (await read_kind(first, "add_result")).ok
        await first.write(add("w2", ("w2",)))
        result = await read_kind(first, "add_result")
        assert not result.ok and result.error.message.startswith(
            "limits.max_subscriptions: identity 'watcher': has 3 subscriptions open")
        await second.write(pb.SubscribeRequest(remove=pb.SubscribeRequest.Remove(
            subscription_id="x")))
        await read_kind(second, "removed")
        await first.write(add("w3", ("w3",)))
        assert (await read_kind(first, "add_result")).ok
        await first.write(pb.SubscribeRequest(remove=pb.SubscribeRequest.Remove(
            subscription_id="w1")))
        await read_kind(first, "removed")
        await second.write(add("w4", ("w4",)))
        result = await read_kind(second, "add_result")
        assert not result.ok and result.error.message.startswith(
            "limits.new_namespaces_per_minute: identity 'watcher': may create 2 namespaces "
            "per minute and namespace 'w4' would be one more")
        for call in (first, second):
            call.cancel()


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_a_policy_reload_ends_subscriptions_that_lost_their_permission(
        setup: Setup) -> None:
    async with setup.token_channel() as channel, \
            grpc.aio.insecure_channel(setup.unix) as local:
        meta = setup.bearer("watcher")
        call = stub(channel).Subscribe(metadata=meta)
        await call.write(add("named", ("a",)))
        await call.write(add("all", ()))
        for _ in range(2):
            assert (await read_kind(call, "add_result")).ok
        envelopes = events_pb2_grpc.EventsStub(channel).Subscribe(
            events_pb2.SubscribeRequest(), metadata=meta)
        await wait_until(lambda: setup.server.hub.statistics().namespaces["a"].subscribers == 3)
        setup.policy.write_text(POLICY.replace('subscribe = ["a", "w*"]', 'subscribe = ["w*"]'))
        os.utime(setup.policy, ns=(1, 1))  # a new version even within the clock's step
        ended = {}
        with anyio.fail_after(10):
            while len(ended) < 2:
                item = await read_kind(call, "subscription_ended")
                ended[item.subscription_id] = item
        assert {e.reason for e in ended.values()} == {"permission_revoked"}
        assert "namespace 'a'" in ended["named"].message
        code, details = await code_of(envelopes.read())
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "permission_revoked" in details
        # new calls see the new policy
        await call.write(add("again", ("a",)))
        result = await read_kind(call, "add_result")
        assert not result.ok and result.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        await publish(local, "a", "/x")
        call.cancel()


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_a_bad_policy_file_is_refused_and_the_old_one_stays(setup: Setup) -> None:
    setup.policy.write_text(POLICY + "\n[identities.x]\npublish = [\"not a namespace\"]\n")
    os.utime(setup.policy, ns=(2, 2))
    assert not setup.server.reload_security()
    async with setup.mtls(setup.ca.spiffe_client(PUBLISHER)) as channel:
        assert (await publish(channel, "a", "/x")).sequence >= 1


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_metrics_show_each_scraper_its_namespaces(setup: Setup) -> None:
    async with grpc.aio.insecure_channel(setup.unix) as local:
        for ns in ("a", "b"):
            await publish(local, ns, "/x")
    address = setup.server.metrics_address

    def get(token: str | None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://{address}/metrics")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    status, body = await anyio.to_thread.run_sync(get, setup.metrics_token)
    assert status == 200
    assert 'broadcaster_events_published_total{namespace="a"} 1.0' in body
    assert 'namespace="b"' not in body and "broadcaster_namespaces " in body
    assert (await anyio.to_thread.run_sync(get, None))[0] == 401
    assert (await anyio.to_thread.run_sync(get, setup.tokens["watcher"]))[0] == 401
    # the registry itself (what the server exports to its own tools) is complete
    assert b'namespace="b"' in generate_latest(setup.server.registry)


@pytest.mark.memory_only("the policy is applied at the edge, whatever the log")
async def test_refused_credentials_are_logged_once_per_client_address(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """Each new connection has a port of its own: the log's rate limit is per address,
    so a client retrying with a bad token on new connections is logged once."""
    caplog.set_level("WARNING", logger="broadcaster.security")
    for _ in range(3):
        async with setup.token_channel() as channel:  # a new connection each time
            code, _ = await code_of(stub(channel).Publish(
                pb.PublishRequest(namespace="shared", topic="/x"),
                metadata=(("authorization", f"Bearer {new_token()}"),), timeout=5))
            assert code is grpc.StatusCode.UNAUTHENTICATED
    logged = [r.getMessage() for r in caplog.records if "reason=invalid_token" in r.getMessage()]
    assert len(logged) == 1 and "peer=ipv4:127.0.0.1:" in logged[0]
    denied = {s.labels["reason"]: s.value for s in _samples(setup.server,
                                                            "broadcaster_auth_denied_total")}
    assert denied["invalid_token"] == 3

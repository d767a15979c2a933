"""The attacks of issue 13, replayed against a server with an access policy, over real
connections: an unprivileged caller on 127.0.0.1 (``anonymous``) forging a ``TaskExit``
into ``k8s.io`` on both APIs, replaying another namespace's history, a shim's
``Forward`` envelope forging namespace ``moby`` with a timestamp in 2001, reading
``/metrics`` and listing the API by reflection; identities from real client
certificates (DNS SAN, common name), and certificates of another authority refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from google.protobuf import any_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc

from broadcaster._auth import ListenerSecurity, SecurityConfig
from broadcaster.containerd.events import task_pb2
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.grpc import Server
from broadcaster.v1 import broadcaster_pb2 as pb

from .._certs import Authority
from ._helpers import add, code_of, list_services, publish, read_events, read_kind, stub
from .conftest import MakeServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

POLICY = """
[identities.local]
admin = ["*"]

[identities.anonymous]
publish = ["scratch"]
create = ["scratch"]
subscribe = ["scratch"]

[identities."shim.k8s.example"]
publish = ["k8s.io"]

[identities.kubelet]
subscribe = ["k8s.io"]
"""

EXIT = any_pb2.Any(type_url="containerd.events.TaskExit", value=task_pb2.TaskExit(
    container_id="c1", id="c1", pid=42, exit_status=137).SerializeToString())


@dataclass
class Target:
    server: Server
    tcp: str  # loopback, no credentials: callers are "anonymous"
    mtls: str  # 127.0.0.1 (the server certificate's address)
    unix: str
    ca: Authority

    def published(self, namespace: str) -> int:
        ns = self.server.hub.statistics().namespaces.get(namespace)
        return 0 if ns is None else ns.published

    def tls_channel(self, pair: Any) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(self.ca.ca_pem, pair.key, pair.cert)
        return grpc.aio.secure_channel(self.mtls, creds)


@pytest.fixture
async def target(make_server: MakeServer, tmp_path: Path) -> AsyncIterator[Target]:
    ca = Authority(tmp_path / "pki")
    pair = ca.server()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    security = SecurityConfig(
        policy_file=str(policy), tls_cert_file=str(pair.cert_file),
        tls_key_file=str(pair.key_file), tls_client_ca_file=str(ca.ca_file),
        listeners={"127.0.0.2:0": ListenerSecurity(tls=False, auth="none")})
    sock = f"unix:{tmp_path / 'b.sock'}"
    server = await make_server(listen=["127.0.0.1:0", "127.0.0.2:0", sock],
                               metrics_listen="127.0.0.1:0", security=security)
    target = Target(server, server.addresses[1], server.addresses[0], server.addresses[2], ca)
    async with grpc.aio.insecure_channel(target.unix) as local:
        for ns in ("k8s.io", "moby"):  # the victims' namespaces, with history
            await publish(local, ns, "/tasks/exit", payload=EXIT)
    yield target



@pytest.mark.memory_only("decided at the edge, before the log")
async def test_a_forged_task_exit_from_loopback_is_refused_on_both_apis(
        target: Target) -> None:
    async with grpc.aio.insecure_channel(target.tcp) as channel:
        code, details = await code_of(publish(channel, "k8s.io", "/tasks/exit", payload=EXIT))
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED,
                                   "namespace: identity 'anonymous' lacks permission "
                                   "'publish' on namespace 'k8s.io'")
        # a batch with one forged event among allowed ones: none of it is published
        batches = stub(channel).PublishStream()
        await batches.write(pb.PublishStreamRequest(batch_id=1, events=[
            pb.PublishRequest(namespace="scratch", topic="/ok"),
            pb.PublishRequest(namespace="k8s.io", topic="/tasks/exit", payload=EXIT)]))
        response = await batches.read()
        assert response.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert response.error.message == ("events[1].namespace: identity 'anonymous' lacks "
                                          "permission 'publish' on namespace 'k8s.io'")
        await batches.write(pb.PublishStreamRequest(batch_id=2, events=[
            pb.PublishRequest(namespace="scratch", topic="/ok")]))
        assert list((await batches.read()).sequences) == [1]  # the stream goes on
        await batches.done_writing()
        events = events_pb2_grpc.EventsStub(channel)
        code, details = await code_of(events.Publish(
            events_pb2.PublishRequest(topic="/tasks/exit", event=EXIT),
            metadata=(("containerd-namespace", "k8s.io"),), timeout=5))
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED,
                                   "containerd-namespace: identity 'anonymous' lacks "
                                   "permission 'publish' on namespace 'k8s.io'")
        envelope = events_pb2.Envelope(namespace="k8s.io", topic="/tasks/exit", event=EXIT)
        envelope.timestamp.seconds = 1_700_000_000
        code, details = await code_of(events.Forward(
            events_pb2.ForwardRequest(envelope=envelope), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert details.startswith("envelope.namespace: identity 'anonymous' lacks")
    assert target.published("k8s.io") == 1  # only the victim's own event
    assert target.published("scratch") == 1


@pytest.mark.memory_only("decided at the edge, before the log")
async def test_a_shims_forward_cannot_forge_another_namespace(target: Target) -> None:
    shim = target.ca.client("shim.k8s.example", name="shim")
    async with target.tls_channel(shim) as channel:
        events = events_pb2_grpc.EventsStub(channel)
        envelope = events_pb2.Envelope(namespace="moby", topic="/tasks/exit", event=EXIT)
        envelope.timestamp.seconds = 1_000_000_000  # 2001-09-09
        code, details = await code_of(events.Forward(
            events_pb2.ForwardRequest(envelope=envelope), timeout=5))
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED,
                                   "envelope.namespace: identity 'shim.k8s.example' lacks "
                                   "permission 'publish' on namespace 'moby'")
        # ... nor create a namespace (publish into k8s.io only, which exists)
        envelope.namespace = "moby2"
        code, details = await code_of(events.Forward(
            events_pb2.ForwardRequest(envelope=envelope), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "'publish' on namespace 'moby2'" in details
        envelope.namespace = "k8s.io"
        await events.Forward(events_pb2.ForwardRequest(envelope=envelope), timeout=5)
    assert target.published("moby") == 1 and target.published("k8s.io") == 2
    assert "moby2" not in target.server.hub.statistics().namespaces


async def test_another_namespaces_history_cannot_be_replayed(target: Target) -> None:
    async with grpc.aio.insecure_channel(target.tcp) as channel:
        await publish(channel, "scratch", "/mine")
        call = stub(channel).Subscribe()
        # named, with a resume position
        await call.write(add("named", ("k8s.io",), since={"k8s.io": 0}))
        result = await read_kind(call, "add_result")
        assert not result.ok and result.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert result.error.message == ("namespaces[0]: identity 'anonymous' lacks "
                                        "permission 'subscribe' on namespace 'k8s.io'")
        # every namespace, replaying every one from the start: its own only
        await call.write(add("all", (), since={"k8s.io": 0, "scratch": 0},
                             replay_unlisted=True))
        result = await read_kind(call, "add_result")
        assert result.ok and dict(result.start_sequences) == {"scratch": 0}
        assert set(result.epochs) <= {"scratch"}
        got = [(e.namespace, e.topic) for _, e in await read_events(call, 1)]
        assert got == [("scratch", "/mine")]
        async with grpc.aio.insecure_channel(target.unix) as local:
            await publish(local, "k8s.io", "/tasks/exit", payload=EXIT)
            await publish(local, "scratch", "/later")
        got = [(e.namespace, e.topic) for _, e in await read_events(call, 1)]
        assert got == [("scratch", "/later")]
        call.cancel()


@pytest.mark.memory_only("decided at the edge, before the log")
async def test_reflection_and_metrics_tell_anonymous_callers_nothing(
        target: Target) -> None:
    async with grpc.aio.insecure_channel(target.tcp) as channel:
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        # the refusal may end the call before the request is written: the write
        # then raises it, rather than the read
        code, details = await code_of(list_services(reflect))
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED,
                                   "method: identity 'anonymous' lacks permission 'admin' "
                                   "on the server")
        stats = await stub(channel).Stats(pb.StatsRequest(), timeout=5)
        assert [ns.namespace for ns in stats.namespaces] == []

    def scrape() -> str:
        with urllib.request.urlopen(f"http://{target.server.metrics_address}/metrics",
                                    timeout=10) as response:
            return response.read().decode()

    body = await anyio.to_thread.run_sync(scrape)  # no metrics token file: anonymous
    assert "k8s.io" not in body and "moby" not in body
    assert "broadcaster_auth_denied_total" in body


@pytest.mark.memory_only("decided at the edge, before the log")
async def test_identities_from_real_client_certificates(target: Target) -> None:
    """The DNS SAN, else the common name; a certificate of another authority, or none,
    does not get past the handshake."""
    kubelet = target.ca.client(common_name="kubelet", name="kubelet")
    async with target.tls_channel(kubelet) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("k8s", ("k8s.io",), since={"k8s.io": 0}))
        assert (await read_kind(call, "add_result")).ok
        [(_, event)] = await read_events(call, 1)
        assert (event.namespace, event.sequence) == ("k8s.io", 1)
        code, details = await code_of(publish(channel, "k8s.io", "/tasks/exit"))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "identity 'kubelet' lacks permission 'publish'" in details
        call.cancel()
    stranger = Authority(target.ca.directory / "other", "other").client(
        "shim.k8s.example", name="stranger")
    async with target.tls_channel(stranger) as channel:
        code, _ = await code_of(publish(channel, "k8s.io", "/x"))
        assert code is grpc.StatusCode.UNAVAILABLE  # the handshake fails
    async with grpc.aio.secure_channel(
            target.mtls, grpc.ssl_channel_credentials(target.ca.ca_pem)) as channel:
        code, _ = await code_of(publish(channel, "k8s.io", "/x"))
        assert code is grpc.StatusCode.UNAVAILABLE  # no client certificate
    assert target.published("k8s.io") == 1
    denied = {s.labels["reason"]: s.value for family in target.server.registry.collect()
              for s in family.samples if s.name == "broadcaster_auth_denied_total"}
    assert denied == {"publish": 1}

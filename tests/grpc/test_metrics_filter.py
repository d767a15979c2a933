"""/metrics with a scrape filter: a scrape sees only the series of the namespaces its
identity may see (server-wide series stay), is refused with 401 without a valid token,
and /healthz stays open."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from broadcaster._auth import Unauthenticated
from broadcaster.grpc._metrics_http import MetricsHTTPServer, NamespaceFilter


class _Figures(Collector):
    def collect(self) -> Iterator[Metric]:
        published = CounterMetricFamily("broadcaster_events_published", "x",
                                        labels=["namespace"])
        for name in ("tenant-a.x", "tenant-b.x"):
            published.add_metric([name], 1)
        yield published
        yield GaugeMetricFamily("broadcaster_namespaces", "x", value=2)


def scrape_filter(header: str | None, peer: str) -> NamespaceFilter | None:
    if header == "Bearer admin-token":
        return None
    if header == "Bearer a-token":
        return lambda namespace: namespace.startswith("tenant-a.")
    raise Unauthenticated("no_token", "/metrics requires a bearer token")


def get(address: str, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{address}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def server() -> Iterator[MetricsHTTPServer]:
    registry = CollectorRegistry()
    registry.register(_Figures())
    http = MetricsHTTPServer("127.0.0.1:0", registry, lambda: True, scrape_filter)
    try:
        yield http
    finally:
        http.close()


def test_a_scrape_sees_only_its_namespaces(server: MetricsHTTPServer) -> None:
    status, body = get(server.address, "/metrics", "a-token")
    assert status == 200
    assert 'broadcaster_events_published_total{namespace="tenant-a.x"} 1.0' in body
    assert "tenant-b" not in body
    assert "broadcaster_namespaces 2.0" in body
    status, body = get(server.address, "/metrics", "admin-token")
    assert status == 200 and "tenant-b.x" in body


def test_a_scrape_without_a_valid_token_is_refused(server: MetricsHTTPServer) -> None:
    for token in (None, "wrong"):
        status, body = get(server.address, "/metrics", token)
        assert status == 401 and body == "authorization: /metrics requires a bearer token\n"
    assert get(server.address, "/healthz") == (200, "ok\n")

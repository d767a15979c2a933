"""Prometheus ``/metrics`` and ``/healthz`` over HTTP, in a thread of their own.

Collection happens on the event loop's thread (the hub is not thread-safe): the
collector registered in the registry hops to the loop for every scrape.

A scrape may be asked who it is (``scrape_filter``): it then sees only the series of the
namespaces its identity may see (every series with a ``namespace`` label is filtered;
the others are server-wide figures), and a scrape refused is answered 401.
``/healthz`` is always open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import anyio.from_thread
import anyio.lowlevel
from prometheus_client import make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["LoopCollector", "MetricsHTTPServer", "NamespaceFilter", "ScrapeFilter"]

#: Which namespaces' series a scrape may see.
NamespaceFilter = Callable[[str], bool]
#: ``(Authorization header, peer) -> NamespaceFilter`` (None: every namespace); raises
#: an exception with a ``message`` to refuse the scrape (401).
ScrapeFilter = Callable[[str | None, str], NamespaceFilter | None]


class _Filtered:
    """*registry*'s metrics without the series of namespaces *visible* refuses."""

    def __init__(self, registry: CollectorRegistry, visible: NamespaceFilter) -> None:
        self._registry = registry
        self._visible = visible

    def collect(self) -> Iterator[Metric]:
        visible = self._visible
        seen: dict[str, bool] = {}  # one decision per namespace per scrape
        for family in self._registry.collect():
            if not any("namespace" in sample.labels for sample in family.samples):
                yield family
                continue
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                name = sample.labels.get("namespace")
                if name is not None:
                    allowed = seen.get(name)
                    if allowed is None:
                        allowed = seen[name] = visible(name)
                    if not allowed:
                        continue
                kept.samples.append(sample)
            yield kept

logger = logging.getLogger("broadcaster.metrics")


class LoopCollector(Collector):
    """Runs *inner*'s ``collect`` on the event loop that created this object (its
    ``collect_async``, if it has one, when called from another thread: a scrape)."""

    def __init__(self, inner: Collector) -> None:
        self._inner = inner
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if threading.get_ident() == self._thread:
            return list(self._inner.collect())
        collect_async = getattr(self._inner, "collect_async", None)
        try:
            if collect_async is not None:
                return anyio.from_thread.run(collect_async, token=self._token)
            return anyio.from_thread.run_sync(
                lambda: list(self._inner.collect()), token=self._token)
        except RuntimeError:  # the loop is gone: the server stopped
            return []


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics http " + format, *args)


class MetricsHTTPServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (200 when serving, else 503).

    :param address: ``HOST:PORT`` (port 0 picks a free one)
    :param registry: the registry to expose
    :param healthy: returns whether the server is serving
    :param scrape_filter: who a scrape is and what it may see (None: everyone sees all)
    """

    def __init__(self, address: str, registry: CollectorRegistry,
                 healthy: Callable[[], bool], scrape_filter: ScrapeFilter | None = None
                 ) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                ok = healthy()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return iter([b"ok\n" if ok else b"shutting down\n"])
            if scrape_filter is None:
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            try:
                visible = scrape_filter(environ.get("HTTP_AUTHORIZATION"),
                                        str(environ.get("REMOTE_ADDR", "")))
            except Exception as exc:  # refused: the message says why
                start_response("401 Unauthorized", [
                    ("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return iter([f"{exc}\n".encode()])
            if visible is None:
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            body = generate_latest(_Filtered(registry, visible))
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)])
            return iter([body])

        self._httpd = make_server(host, int(port), app, _ThreadingServer, _QuietHandler)
        bound_port = self._httpd.server_address[1]
        self.address = f"{address.rpartition(':')[0]}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="broadcaster metrics http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

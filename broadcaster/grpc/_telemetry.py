"""Server figures: open streams, requests by method and code, rejections by reason.

The server's interceptor (:mod:`._interceptor`) wraps every RPC handler (ours,
containerd's, health, reflection), so the counts cover all services. The figures are
exported as Prometheus metrics through the ``extra`` hook of
:func:`broadcaster._metrics.register_metrics`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Telemetry"]


class Telemetry:
    """Counters of one server (plain ints, read on the event loop's thread)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.open_streams: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()

    @property
    def streams(self) -> int:
        return sum(self.open_streams.values())

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def metrics(self) -> Iterator[Metric]:
        """Metric families of these figures (the ``extra`` hook)."""
        streams = GaugeMetricFamily(
            "broadcaster_grpc_streams_open", "Open streaming RPCs, by method.",
            labels=["method"])
        for method, count in sorted(self.open_streams.items()):
            streams.add_metric([method], count)
        requests = CounterMetricFamily(
            "broadcaster_grpc_requests", "Finished RPCs, by method and status code.",
            labels=["method", "code"])
        for (method, code), count in sorted(self.requests.items()):
            requests.add_metric([method, code], count)
        rejected = CounterMetricFamily(
            "broadcaster_grpc_rejected", "Rejected requests and sub-requests, by reason.",
            labels=["reason"])
        for reason, count in sorted(self.rejected.items()):
            rejected.add_metric([reason], count)
        yield from (streams, requests, rejected)
        yield GaugeMetricFamily(
            "broadcaster_uptime_seconds", "Seconds since the server started.",
            value=self.uptime())

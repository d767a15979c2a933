"""The prometheus collector, with registries passed in (two hubs side by side)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from broadcaster import Broadcaster, Policy
from broadcaster._metrics import register_metrics

from ._util import drain

pytestmark = pytest.mark.anyio


async def test_metrics_expose_counts_by_namespace_and_reason() -> None:
    registry_1, registry_2 = CollectorRegistry(), CollectorRegistry()
    async with Broadcaster() as hub_1, Broadcaster() as hub_2:
        register_metrics(hub_1, registry_1)
        register_metrics(hub_2, registry_2)
        async with hub_1.subscribe("k8s.io", policy=Policy.drop_oldest(2)) as sub:
            for _ in range(5):
                await hub_1.publish("k8s.io", "/tasks/exit")
            text = generate_latest(registry_1).decode()
            assert 'broadcaster_subscribers{namespace="k8s.io"} 1.0' in text
            assert (
                'broadcaster_events_dropped_total{namespace="k8s.io",reason="drop_oldest"} 3.0'
                in text
            )
            drain(sub)
        text = generate_latest(registry_1).decode()
        assert 'broadcaster_events_published_total{namespace="k8s.io"} 5.0' in text
        assert 'broadcaster_events_delivered_total{namespace="k8s.io"} 2.0' in text
        assert 'broadcaster_subscribers{namespace="k8s.io"} 0.0' in text
        assert 'broadcaster_delivery_latency_seconds_count{namespace="k8s.io"} 2.0' in text
        assert "broadcaster_slow_callbacks_total 0.0" in text
        assert "# TYPE broadcaster_subscribers_evicted_total counter" in text
        # the other hub's registry knows nothing of it
        assert "k8s.io" not in generate_latest(registry_2).decode()

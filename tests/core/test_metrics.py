"""The prometheus collector, with registries passed in (two hubs side by side)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from broadcaster import HubConfig, Policy
from broadcaster._metrics import register_metrics

from ._util import Broadcaster, drain

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


@pytest.mark.memory_only(
    "it fills the server-wide retention budget, which bounds memory logs "
    "only"
)
async def test_metrics_expose_the_server_wide_figures() -> None:
    registry = CollectorRegistry()
    config = HubConfig(max_cursors=1000, max_retained_bytes=10_000)
    async with Broadcaster(config) as hub, hub.subscribe(["a", "b"], liveness="ack") as sub:
        register_metrics(hub, registry)
        sub.ack(0)
        for _ in range(40):
            await hub.publish("a", "/x", b"x" * 100)
        text = generate_latest(registry).decode()
        assert "broadcaster_heartbeat_acks_ignored_total 1.0" in text
        assert "broadcaster_namespaces 2.0" in text
        assert "broadcaster_namespaces_removed_total 0.0" in text
        assert "broadcaster_cursors 2.0" in text
        assert "broadcaster_cursors_limit 1000.0" in text
        assert "broadcaster_retained_bytes_limit 10000.0" in text
        # no subscription over more than 64 namespaces: no wide work, nothing waited
        assert "broadcaster_wide_work_seconds_total 0.0" in text
        assert "broadcaster_wide_work_waited_seconds_total 0.0" in text
        assert "broadcaster_event_loop_stalled_seconds_total" in text
        assert 'broadcaster_event_loop_lag_seconds_bucket{le="+Inf"}' in text
        trimmed = hub.statistics().budget_trimmed_events
        assert trimmed > 0
        assert f"broadcaster_retention_budget_trimmed_events_total {trimmed:.1f}" in text

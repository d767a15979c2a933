"""The Prometheus collector (``broadcaster/_metrics.py``): a scrape from another thread
(``collect_async``) makes its samples in slices and says what ``collect`` says."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from broadcaster import Broadcaster, HubConfig
from broadcaster._metrics import HubCollector

from ._ticker import Ticker

NAMESPACES = 50


@pytest.mark.anyio
async def test_a_scrape_makes_each_namespaces_samples_in_slices() -> None:
    """1,000 namespaces were 60-90 ms of samples made in one turn of the loop, at every
    scrape; each namespace's samples are now a slice of their own at ``slice_seconds``
    0 (the hub's figures are taken in slices too: another yield per namespace)."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600)) as hub:
        for i in range(NAMESPACES):
            await hub.publish(f"ns{i}", "/t", b"x" * i)
        collector = HubCollector(hub)
        ticker = Ticker()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            await anyio.lowlevel.checkpoint()
            before = ticker.turn
            scraped = await collector.collect_async(slice_seconds=0)
            during = ticker.turn - before
            ticker.running = False
        # a yield per namespace for the figures and one for the samples: 2 x 50 (trio
        # may run the ticker once less; with the figures alone sliced, 50)
        assert during >= 3 * NAMESPACES // 2
        collected = list(collector.collect())
    by_namespace = [family for family in collected
                    if family.samples and "namespace" in family.samples[0].labels]
    assert len(by_namespace) >= 10
    assert {family.name: family.samples for family in by_namespace} == {
        family.name: family.samples for family in scraped if family.name in
        {f.name for f in by_namespace}}
    retained = {s.labels["namespace"]: s.value for s in next(
        f for f in scraped if f.name == "broadcaster_retained_bytes").samples}
    assert len(retained) == NAMESPACES and retained["ns7"] > retained["ns6"]

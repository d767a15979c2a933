"""What the core offers an edge, so that it reads no cursor and repeats no check:
``Broadcaster.check_publish`` (a publish checked, nothing published), and a
subscription's latest sequences and policy bounds."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from broadcaster import (
    Broadcaster,
    BroadcasterError,
    Heartbeat,
    HubConfig,
    NamespaceConfig,
    Policy,
    PublishItem,
    QuotaExceeded,
    Retention,
)

pytestmark = pytest.mark.anyio

_CONFIG = HubConfig(
    max_namespaces=3,
    namespaces={
        "small": NamespaceConfig(max_payload_bytes=100),
        "tiny": NamespaceConfig(retention=Retention(max_bytes=1000)),
        # a token per 1000 s: no refill while a test runs, however loaded the machine
        "slow": NamespaceConfig(max_publish_rate=0.001, publish_burst=2),
    },
)

_BAD_BATCHES: list[tuple[str, list[PublishItem]]] = [
    ("bad name", [PublishItem("/x")]),
    ("ns", [PublishItem("/x"), PublishItem("no-slash")]),
    ("ns", [PublishItem("/x", labels={"": "v"})]),
    ("ns", [PublishItem("/x", payload="text")]),  # type: ignore[arg-type]
    ("ns", [PublishItem("/x", type_url=7)]),  # type: ignore[arg-type]
    ("small", [PublishItem("/x", b"x" * 101)]),
    ("small", [PublishItem("/x", b"x" * 60, type_url="t" * 41)]),  # together over 100
    ("tiny", [PublishItem("/x", b"x" * 900)]),  # more than retention can hold
    ("slow", [PublishItem("/x")] * 3),  # over the burst of a namespace not yet created
]


async def _error(call: object) -> BroadcasterError:
    with pytest.raises(BroadcasterError) as info:
        await call  # type: ignore[misc]
    return info.value


@pytest.mark.parametrize(("namespace", "items"), _BAD_BATCHES)
async def test_check_publish_refuses_what_publish_many_refuses_the_same_way(
        namespace: str, items: list[PublishItem]) -> None:
    async with Broadcaster(_CONFIG) as hub:
        checked = await _error(hub.check_publish([(namespace, items)]))
        assert hub.namespace_names() == []  # nothing created by the check
        published = await _error(hub.publish_many(namespace, items))
        assert (type(checked), str(checked)) == (type(published), str(published))


async def test_check_publish_counts_the_rate_of_a_live_namespace_without_taking_it() -> None:
    async with Broadcaster(_CONFIG) as hub:
        await hub.publish("slow", "/x")  # one token of two left
        for _ in range(3):  # checking takes nothing
            await hub.check_publish([("slow", [PublishItem("/x")])])
        error = await _error(hub.check_publish([("slow", [PublishItem("/x")] * 2)]))
        assert isinstance(error, QuotaExceeded)
        assert str(error) == str(await _error(hub.publish_many("slow", [PublishItem("/x")] * 2)))
        assert await hub.publish_many("slow", [PublishItem("/x")]) == [2]


async def test_batches_are_checked_as_if_the_earlier_ones_were_published() -> None:
    """A request spanning namespaces is refused whole: what the earlier batches would
    take counts against the later ones, and fields count items across batches."""
    async with Broadcaster(_CONFIG) as hub:
        x = PublishItem("/x")
        cases: list[tuple[list[tuple[str, Sequence[PublishItem]]], type[Exception], str]] = [
            ([("a", [x, x]), ("b", [x, PublishItem("bad")])], BroadcasterError,
             "items[3].topic: "),
            ([("a", [x]), ("small", [x, PublishItem("/x", b"1" * 50, "u" * 51)])],
             BroadcasterError, "items[2].type_url: 51 bytes, with the payload's 50, exceed"),
            ([("slow", [x, x]), ("a", [x]), ("slow", [x])], QuotaExceeded,
             "items[3].namespace: namespace 'slow' is over its rate"),
            ([("a", [x]), ("b", [x]), ("a", [x]), ("c", [x]), ("d", [x])], QuotaExceeded,
             "items[4].namespace: creating 4 new namespaces would exceed the hub's maximum "
             "of 3 namespaces"),
            ([("ok", [x]), ("", [x])], BroadcasterError, "items[1].namespace: "),
            ([("", [x])], BroadcasterError, "namespace: "),
        ]
        for batches, kind, message in cases:
            error = await _error(hub.check_publish(batches))
            assert isinstance(error, kind) and str(error).startswith(message), str(error)
        assert hub.namespace_names() == []
        # what passes the check publishes, batch by batch
        batches = [("a", [x, x]), ("slow", [x]), ("a", [x]), ("slow", [x])]
        await hub.check_publish(batches)
        assert hub.namespace_names() == []
        assert [await hub.publish_many(ns, items) for ns, items in batches] == [
            [1, 2], [1], [3], [2]]


async def test_check_publish_of_a_closed_hub_says_closed() -> None:
    async with Broadcaster() as hub:
        hub.close()
        with pytest.raises(anyio.ClosedResourceError):
            await hub.check_publish([("a", [PublishItem("/x")])])


async def test_checking_a_large_batch_lets_other_tasks_run() -> None:
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with Broadcaster(HubConfig(publish_yield_every=64)) as hub, \
            anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        while not ticks:
            await anyio.lowlevel.checkpoint()
        before = ticks
        await hub.check_publish([("a", [PublishItem("/x")] * 200),
                                 ("b", [PublishItem("/y")] * 200)])
        during = ticks - before
        done = True
    assert during >= 5  # 400 items, a checkpoint every 64


async def test_latest_sequences_are_what_the_next_heartbeat_carries() -> None:
    async with Broadcaster(HubConfig(heartbeat_interval=1.0)) as hub:
        await hub.publish("a", "/x")
        async with hub.subscribe(["a", "b"]) as sub:
            await hub.publish_many("b", [PublishItem("/x")] * 3)
            assert sub.latest_sequences() == {"a": 1, "b": 3}
            while True:
                items = await sub.receive_batch()
                beats = [item for item in items if isinstance(item, Heartbeat)]
                if beats:
                    break
            assert beats[0].latest_sequences == sub.latest_sequences()
        assert sub.latest_sequences() == {}  # closed: it reads nothing


async def test_policy_bounds_are_the_tightest_the_subscription_may_get() -> None:
    config = HubConfig(
        default_namespace=NamespaceConfig(default_policy=Policy.drop_newest(1000)),
        namespaces={
            "capped": NamespaceConfig(max_policy_events=50,
                                      default_policy=Policy.drop_newest(40)),
            "bytes": NamespaceConfig(default_policy=Policy.drop_oldest(500, max_bytes=4096)),
        })
    async with Broadcaster(config) as hub:
        async with hub.subscribe("other") as sub:
            assert sub.policy_bounds() == (1000, 0)
        async with hub.subscribe(["other", "bytes"]) as sub:
            assert sub.policy_bounds() == (500, 4096)
        async with hub.subscribe("other", policy=Policy.drop_oldest(7, max_bytes=99)) as sub:
            assert sub.policy_bounds() == (7, 99)
        # all namespaces: those it reads, and those it would meet later (cut down to
        # their limits)
        async with hub.subscribe(None, policy=Policy.drop_newest(100)) as sub:
            assert sub.policy_bounds() == (50, 0)
        async with hub.subscribe(None) as sub:
            assert sub.policy_bounds() == (40, 4096)

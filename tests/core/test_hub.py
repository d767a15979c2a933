"""Publishing, subscribing, multiplexing and the subscription's lifetime (both backends)."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import anyio
import pytest

from broadcaster import (
    Ended,
    EndReason,
    Event,
    HubConfig,
    InvalidArgument,
    InvalidFilter,
    InvalidNamespace,
    InvalidPolicy,
    InvalidTopic,
    NamespaceConfig,
    PayloadTooLarge,
    Policy,
    PublishItem,
    QuotaExceeded,
    Retention,
    Subscription,
)

from ._util import Broadcaster, drain, events_of, open_all, until

pytestmark = pytest.mark.anyio


async def test_sequences_are_per_namespace_and_gapless() -> None:
    async with Broadcaster() as hub:
        assert [await hub.publish("a", "/x") for _ in range(3)] == [1, 2, 3]
        assert await hub.publish("b", "/x") == 1
        seqs = await hub.publish_many("a", [PublishItem("/y"), PublishItem("/z")])
        assert seqs == [4, 5]


async def test_event_fields_arrive_unchanged() -> None:
    payload = bytes(range(256))  # e.g. the value of a protobuf Any
    async with Broadcaster(HubConfig(wall_clock=lambda: 1234)) as hub:
        async with hub.subscribe("k8s.io") as sub:
            seq = await hub.publish(
                "k8s.io", "/tasks/exit", payload,
                type_url="containerd.events.TaskExit", labels={"pod": "p1"},
            )
            event = await sub.receive()
    assert isinstance(event, Event)
    assert (event.namespace, event.topic, event.payload, event.type_url) == (
        "k8s.io", "/tasks/exit", payload, "containerd.events.TaskExit")
    assert event.labels == {"pod": "p1"}
    assert event.sequence == seq == 1
    assert event.timestamp_ns == 1234


async def test_publisher_timestamp_is_kept() -> None:
    async with Broadcaster() as hub, hub.subscribe("a") as sub:
        await hub.publish("a", "/x", timestamp_ns=42)
        event = await sub.receive()
        assert isinstance(event, Event) and event.timestamp_ns == 42


async def test_subscription_sees_only_events_after_it_started() -> None:
    async with Broadcaster() as hub:
        await hub.publish("a", "/old")
        async with hub.subscribe("a") as sub:
            await hub.publish("a", "/new")
            event = await sub.receive()
            assert isinstance(event, Event) and event.topic == "/new"


async def test_filters_are_applied() -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe("a", filters=['topic=="/tasks/exit"', "labels.important"]) as sub:
            await hub.publish("a", "/tasks/start")
            await hub.publish("a", "/tasks/exit")
            await hub.publish("a", "/tasks/oom", labels={"important": "yes"})
            await hub.publish("a", "/tasks/delete")
            got = events_of(drain(sub))
        assert [e.topic for e in got] == ["/tasks/exit", "/tasks/oom"]


async def test_multiplexing_several_namespaces() -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe(["a", "b"]) as sub:
            await hub.publish("a", "/x")
            await hub.publish("b", "/x")
            await hub.publish("c", "/x")
            await hub.publish("b", "/y")
            got = events_of(drain(sub))
        assert sorted((e.namespace, e.sequence) for e in got) == [("a", 1), ("b", 1), ("b", 2)]


async def test_all_namespaces_includes_ones_created_later() -> None:
    async with Broadcaster() as hub:
        await hub.publish("early", "/x")
        async with hub.subscribe(None) as sub:
            await hub.publish("early", "/x")
            await hub.publish("late", "/x")
            got = events_of(drain(sub))
        assert sorted((e.namespace, e.sequence) for e in got) == [("early", 2), ("late", 1)]


async def test_subscriber_wakes_up_when_an_event_is_published() -> None:
    async with Broadcaster() as hub, hub.subscribe("a") as sub:
        got: list[Event] = []

        async def consume() -> None:
            item = await sub.receive()
            assert isinstance(item, Event)
            got.append(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await hub.publish("a", "/x")
        assert [e.sequence for e in got] == [1]


async def test_leaving_the_block_unregisters_at_once() -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe(["a", "b"]):
            assert hub.subscription_count == 1
            assert hub.statistics().namespaces["a"].subscribers == 1
        assert hub.subscription_count == 0
        stats = hub.statistics().namespaces
        assert stats["a"].subscribers == stats["b"].subscribers == 0


async def test_cancelling_the_enclosing_scope_mid_iteration_unregisters() -> None:
    async with Broadcaster() as hub:
        received = anyio.Event()

        async def consumer() -> None:
            async with hub.subscribe("a") as sub:
                async for _item in sub:
                    received.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            # a durable log opens first (in a thread for local, over NATS for jetstream)
            await until(lambda: hub.subscription_count == 1)
            await hub.publish("a", "/x")
            await received.wait()
            tg.cancel_scope.cancel()
        assert hub.subscription_count == 0
        assert hub.statistics().namespaces["a"].subscribers == 0


async def test_closing_the_hub_ends_active_subscribers_cleanly() -> None:
    ended: list[object] = []
    events: list[int] = []

    async def consumer(hub: Broadcaster, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with hub.subscribe("a") as sub:
            task_status.started()
            async for item in sub:
                if isinstance(item, Event):
                    events.append(item.sequence)
                else:
                    ended.append(item)
        ended.append("iteration finished")

    async with anyio.create_task_group() as tg, Broadcaster() as hub:
        await tg.start(consumer, hub)
        await tg.start(consumer, hub)
        await hub.publish("a", "/x")
        # the hub is closed; consumers drain what was buffered, get Ended, and stop
    assert events == [1, 1]
    assert ended.count("iteration finished") == 2
    assert [e.reason for e in ended if isinstance(e, Ended)] == [EndReason.HUB_CLOSED] * 2


async def test_a_closed_hub_still_gives_a_topic_filter_what_was_published() -> None:
    """Closing the hub takes subscriptions out of their namespaces' topic index; one
    filtering on topics then read what had been published since its last read and
    crashed (KeyError) instead of getting it and Ended."""
    async with Broadcaster() as hub:
        sub = hub.subscribe("a", filters=['topic=="/x"'])
        await open_all(hub, sub)
        for topic in ("/x", "/y", "/x"):
            await hub.publish("a", topic)
        hub.close()
        items = drain(sub)
    assert [i.sequence for i in events_of(items)] == [1, 3]
    assert isinstance(items[-1], Ended) and items[-1].reason is EndReason.HUB_CLOSED


async def test_using_a_closed_subscription_fails() -> None:
    async with Broadcaster() as hub:
        async with hub.subscribe("a") as sub:
            pass
        with pytest.raises(anyio.ClosedResourceError):
            await sub.receive()
        with pytest.raises(RuntimeError, match="only once"):
            await sub.__aenter__()


async def test_closing_from_another_task_wakes_the_receiver() -> None:
    raised: list[BaseException] = []

    async def receive(sub: Subscription) -> None:
        try:
            await sub.receive()
        except anyio.ClosedResourceError as exc:
            raised.append(exc)

    async with Broadcaster() as hub, hub.subscribe("a") as sub, anyio.create_task_group() as tg:
        tg.start_soon(receive, sub)
        await anyio.wait_all_tasks_blocked()
        sub.close()
    assert len(raised) == 1


async def test_publish_after_close_fails() -> None:
    async with Broadcaster() as hub:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await hub.publish("a", "/x")


@pytest.mark.memory_only(
    "what it checks, a subscription leaving nothing behind, is the same on every log; "
    "its 6,667 publishes, each a durable append on local and jetstream, take 25-30 s there"
)
async def test_ten_thousand_subscribe_cancel_cycles_leak_nothing() -> None:
    # a small retention, so that the log itself does not grow with the events published
    config = HubConfig(default_namespace=NamespaceConfig(retention=Retention(max_events=10)))
    async with Broadcaster(config) as hub:
        await hub.publish("a", "/x")
        gc.collect()
        tasks_before = len(anyio.get_running_tasks())
        for i in range(10_000):
            if i == 1_000:
                gc.collect()
                tracemalloc.start()
                memory_at_1000 = tracemalloc.get_traced_memory()[0]
            with anyio.CancelScope() as scope:
                async with hub.subscribe("a" if i % 2 else ["a", "b"]) as sub:
                    if i % 3 == 0:
                        scope.cancel()
                        await sub.receive()  # cancelled mid-receive
                    else:
                        await hub.publish("a", "/x")
                        await sub.receive()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - memory_at_1000
        tracemalloc.stop()
        # a leak of even one small object per cycle would be over 1 MB here; what is allowed
        # is the log's compaction slack (up to 1,024 trimmed events held until compaction)
        assert growth < 256 * 1024, f"{growth} bytes more after 9,000 more cycles"
        assert hub.subscription_count == 0
        ns = hub._namespaces["a"]
        assert not ns.cursors and not ns.waiting and not ns.block_cursors and not ns.sweep_cursors
        assert not hub._wildcard and not hub._notifier.wildcard_waiting
        assert len(anyio.get_running_tasks()) == tasks_before
        del sub, scope
        gc.collect()
        # at most the last cancelled one survives, in the traceback of its cancellation
        assert len([o for o in gc.get_objects() if isinstance(o, Subscription)]) <= 1


async def test_bad_input_raises_errors_that_name_the_field() -> None:
    config = HubConfig(
        default_namespace=NamespaceConfig(
            max_payload_bytes=10, max_policy_events=100, default_policy=Policy.drop_oldest(10)
        )
    )
    async with Broadcaster(config) as hub:
        with pytest.raises(InvalidNamespace, match="^namespace: "):
            await hub.publish("bad ns", "/x")
        with pytest.raises(InvalidTopic, match="^topic: "):
            await hub.publish("a", "x")
        with pytest.raises(InvalidTopic, match=r"^items\[1\]\.topic: "):
            await hub.publish_many("a", [PublishItem("/ok"), PublishItem("")])
        with pytest.raises(PayloadTooLarge, match="^payload: 11 bytes exceed the limit of 10"):
            await hub.publish("a", "/x", b"x" * 11)
        with pytest.raises(InvalidArgument, match="^payload: must be bytes"):
            await hub.publish("a", "/x", "text")  # type: ignore[arg-type]
        with pytest.raises(InvalidFilter, match=r"^filters\[0\]: "):
            hub.subscribe("a", filters=["nope=="])
        with pytest.raises(InvalidNamespace, match=r"^namespaces\[1\]: "):
            hub.subscribe(["a", "-"])
        with pytest.raises(InvalidArgument, match="^since: "):
            hub.subscribe("a", since=-1)
        with pytest.raises(InvalidPolicy, match=r"^policy\.max_events: "):
            Policy.drop_oldest(0)
        with pytest.raises(InvalidPolicy, match=r"^policy\.max_events: 1000 exceeds 100"):
            async with hub.subscribe("a", policy=Policy.drop_oldest(1000)):
                pass
        with pytest.raises(InvalidPolicy, match=r"^policy\.fallback: "):
            Policy.block(fallback="retry")
        # the refused calls published and created nothing, and the hub still works
        assert hub.namespace_names() == [] and hub.statistics().cursors == 0
        assert await hub.publish("a", "/x") == 1
        assert hub.subscription_count == 0


async def test_quotas() -> None:
    config = HubConfig(
        max_namespaces=2,
        # a token per 1000 s: none comes back while the test runs, however slow the
        # machine (at 10/s, three fsynced publishes taking 0.1 s refilled one); refilling
        # on the clock: test_namespaces.py::test_the_publish_rate_refills_on_the_clock
        namespaces={"small": NamespaceConfig(max_subscriptions=2, max_publish_rate=0.001,
                                             publish_burst=3,
                                             retention=Retention(max_bytes=1000))},
    )
    async with Broadcaster(config) as hub:
        async with hub.subscribe("small"), hub.subscribe(["small"]):
            with pytest.raises(QuotaExceeded, match="maximum of 2 subscriptions"):
                async with hub.subscribe("small"):
                    pass
        assert hub.subscription_count == 0
        for _ in range(3):
            await hub.publish("small", "/x")
        with pytest.raises(QuotaExceeded, match="over its rate"):
            await hub.publish("small", "/x")
        with pytest.raises(PayloadTooLarge, match="retained bytes"):
            await hub.publish("other", "/x")  # creates the 2nd namespace, fine
            await hub.publish("small", "/x", b"x" * 2000)
        with pytest.raises(QuotaExceeded, match="maximum of 2 namespaces"):
            await hub.publish("third", "/x")


async def test_a_timestamp_of_zero_is_a_timestamp() -> None:
    async with Broadcaster(HubConfig(wall_clock=lambda: 99)) as hub, hub.subscribe("a") as sub:
        await hub.publish("a", "/x", timestamp_ns=0)
        event = await sub.receive()
        assert isinstance(event, Event) and event.timestamp_ns == 0


async def test_a_rejected_publish_creates_no_namespace() -> None:
    async with Broadcaster(HubConfig(max_namespaces=1)) as hub:
        with pytest.raises(InvalidTopic):
            await hub.publish("first", "bad")
        assert hub.namespace_names() == []
        await hub.publish("second", "/x")
        assert hub.namespace_names() == ["second"]


async def test_all_namespaces_subscription_is_clamped_to_a_stricter_new_namespace() -> None:
    config = HubConfig(namespaces={"strict": NamespaceConfig(
        max_policy_events=10, default_policy=Policy.drop_oldest(10))})
    async with Broadcaster(config) as hub:
        async with hub.subscribe(None, policy=Policy.drop_newest(500)) as sub:
            for _ in range(20):
                await hub.publish("strict", "/x")  # the publisher is not the one to fail
            items = drain(sub)
            assert sub.cursors["strict"].policy.max_events == 10
        assert len(events_of(items)) == 10


async def test_each_new_namespace_clamps_by_its_own_configuration() -> None:
    """Attaching checks a policy once per namespace configuration, not once per
    namespace: namespaces created in turn with the default and a stricter configuration
    each get their own bounds."""
    config = HubConfig(namespaces={name: NamespaceConfig(
        max_policy_events=10, default_policy=Policy.drop_oldest(10)) for name in ("s1", "s2")})
    async with Broadcaster(config) as hub:
        async with hub.subscribe(None, policy=Policy.drop_newest(500)) as sub:
            for name in ("a", "s1", "b", "s2", "c"):
                await hub.publish(name, "/x")
            assert {name: c.policy.max_events for name, c in sub.cursors.items()} == {
                "a": 500, "s1": 10, "b": 500, "s2": 10, "c": 500}


async def test_start_positions_and_since_default() -> None:
    async with Broadcaster() as hub:
        for _ in range(3):
            await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        async with hub.subscribe(["a", "b"]) as sub:
            assert sub.start_positions() == {"a": 3, "b": 1}
        # resuming an all-namespaces subscription: unlisted namespaces replay from 0
        async with hub.subscribe(None, since={"a": 2}, since_default=0) as sub:
            got = sorted((e.namespace, e.sequence) for e in events_of(drain(sub)))
        assert got == [("a", 3), ("b", 1)]


async def test_a_closed_subscription_is_freed_without_the_cycle_collector() -> None:
    """Subscription and cursors point at each other; closing breaks that, so a churn of
    subscribers leaves no cyclic garbage behind to pile up between collections."""
    async with Broadcaster() as hub:
        await hub.publish("a", "/x")
        gc.disable()
        try:
            async with hub.subscribe(["a", "b"], since=0) as sub:
                await sub.receive()
            freed = weakref.ref(sub)
            del sub
            assert freed() is None
        finally:
            gc.enable()


async def test_names_with_a_trailing_newline_are_refused_and_create_nothing() -> None:
    async with Broadcaster() as hub:
        with pytest.raises(InvalidNamespace, match=r"^namespace: 'k8s.io\\n' must be"):
            await hub.publish("k8s.io\n", "/tasks/exit")
        with pytest.raises(InvalidTopic, match=r"^topic: '/tasks/exit\\n'"):
            await hub.publish("k8s.io", "/tasks/exit\n")
        with pytest.raises(InvalidNamespace, match=r"^namespace: "):
            hub.subscribe("k8s.io\n")
        assert hub.namespace_names() == []


async def test_the_type_url_counts_against_the_payload_limit() -> None:
    config = HubConfig(default_namespace=NamespaceConfig(max_payload_bytes=1000))
    async with Broadcaster(config) as hub, hub.subscribe("a") as sub:
        with pytest.raises(PayloadTooLarge,
                           match=r"^type_url: 3500 bytes, with the payload's 0, exceed the "
                                 r"limit of 1000 \(max_payload_bytes counts payload and "
                                 r"type_url together\)"):
            await hub.publish("a", "/x", type_url="t" * 3500)
        with pytest.raises(PayloadTooLarge, match=r"^items\[1\]\.type_url: 2 bytes, with the "
                                                  r"payload's 999"):
            await hub.publish_many("a", [PublishItem("/x"),
                                         PublishItem("/x", b"x" * 999, "ab")])
        with pytest.raises(PayloadTooLarge, match=r"^type_url: 1002 bytes"):  # UTF-8 bytes
            await hub.publish("a", "/x", type_url="é" * 501)
        with pytest.raises(InvalidArgument, match="^type_url: must be a string"):
            await hub.publish("a", "/x", type_url=b"t")  # type: ignore[arg-type]
        # exactly at the limit is fine, and nothing of the refused batches was published
        assert await hub.publish("a", "/x", b"x" * 990, type_url="t" * 10) == 1
        assert [(e.sequence, e.type_url) for e in events_of(drain(sub))] == [(1, "t" * 10)]

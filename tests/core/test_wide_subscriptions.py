"""Subscriptions that read many namespaces (all-namespaces ones over hundreds of
namespaces: issue 9's ``all_ns_subscriptions``). What a read, a park and a wake-up of
one of them costs must not grow with the namespaces it does not hear from: parking waits
once in the hub's notifier (not in each namespace), a keyed one is woken only by an event
with one of its keys, in any namespace, including one created after it parked."""

from __future__ import annotations

import json

import anyio
import pytest

import broadcaster
from broadcaster import Event, HubConfig, PublishItem, Subscription
from broadcaster._core._hub import WIDE

from ._util import Broadcaster, drain, events_of, open_all, until

JSON = "application/json"
EXIT = "/tasks/exit"
NAMESPACES = 200


class Waker:
    """Counts the hub's wake-ups of a subscription parked with ``park_waker``."""

    def __init__(self) -> None:
        self.count = 0

    def set(self) -> None:
        self.count += 1


def _fields(type_url: str, payload: bytes) -> object:
    value = json.loads(payload)["id"]
    return lambda path: (value, True) if tuple(path) == ("id",) else ("", False)


async def _many(hub: broadcaster.Broadcaster, n: int) -> None:
    for i in range(n):
        await hub.publish(f"n{i}", "/other")


@pytest.mark.anyio
@pytest.mark.memory_only("hundreds of namespaces: one durable log each would be slow, and "
                         "parking and waking do not depend on the log")
async def test_a_keyed_all_namespaces_subscription_wakes_only_for_its_keys() -> None:
    config = HubConfig(heartbeat_interval=3600.0, payload_fields=_fields)  # type: ignore[arg-type]
    async with Broadcaster(config) as hub:
        await _many(hub, NAMESPACES)
        topic = hub.subscribe(None, filters=['topic=="/mine"'])
        field = hub.subscribe(None, filters=[f'topic=="{EXIT}",event.id=="c7"'])
        await open_all(hub, topic, field)
        wakers = {"topic": Waker(), "field": Waker()}
        topic.park_waker(wakers["topic"])
        field.park_waker(wakers["field"])
        # they wait in the hub's index only: no namespace holds them
        for ns in hub._namespaces.values():
            assert not ns.waiting and not ns.waiting_keys
        before = hub.statistics().subscription_wakeups
        for i in range(NAMESPACES):  # other topics, other containers, everywhere
            await hub.publish(f"n{i}", "/other")
            await hub.publish(f"n{i}", EXIT, json.dumps({"id": "c1"}).encode(), type_url=JSON)
        await until(lambda: not any(ns.unnoted for ns in hub._namespaces.values()))
        await until(lambda: hub._notifier.woken == before and not hub._notifier._dirty)
        assert (wakers["topic"].count, wakers["field"].count) == (0, 0)
        # its own keys wake each, once, in an old namespace
        await hub.publish("n150", "/mine")
        await hub.publish("n150", EXIT, json.dumps({"id": "c7"}).encode(), type_url=JSON)
        await until(lambda: wakers["topic"].count == 1 and wakers["field"].count == 1)
        assert hub.statistics().subscription_wakeups - before == 2
        for sub in (topic, field):
            sub.unpark()
        assert [e.namespace for e in events_of(drain(topic))] == ["n150"]
        assert [(e.namespace, e.topic) for e in events_of(drain(field))] == [("n150", EXIT)]
        # and in a namespace created after they parked
        topic.park_waker(wakers["topic"])
        field.park_waker(wakers["field"])
        await hub.publish("fresh", "/other")
        await hub.publish("fresh", "/mine")
        await hub.publish("fresh", EXIT, json.dumps({"id": "c7"}).encode(), type_url=JSON)
        await until(lambda: wakers["topic"].count == 2 and wakers["field"].count == 2)
        topic.unpark()
        field.unpark()
        assert [(e.namespace, e.topic) for e in events_of(drain(topic))] == [("fresh", "/mine")]
        assert [(e.namespace, e.topic) for e in events_of(drain(field))] == [("fresh", EXIT)]
        topic.close()
        field.close()
        assert not hub._notifier.wildcard_keys and not hub._notifier.wildcard_waiting


@pytest.mark.anyio
@pytest.mark.memory_only("hundreds of namespaces: one durable log each would be slow, and "
                         "parking and waking do not depend on the log")
async def test_an_unfiltered_all_namespaces_subscription_wakes_for_any_namespace() -> None:
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, NAMESPACES)
        sub = hub.subscribe(None)
        await open_all(hub, sub)
        waker = Waker()
        sub.park_waker(waker)
        for ns in hub._namespaces.values():
            assert not ns.waiting and not ns.waiting_keys
        await hub.publish("n99", "/x")
        await until(lambda: waker.count == 1)
        sub.unpark()
        assert [e.namespace for e in events_of(drain(sub))] == ["n99"]
        sub.park_waker(waker)
        await hub.publish("fresh", "/x")
        await until(lambda: waker.count == 2)
        sub.unpark()
        assert [e.namespace for e in events_of(drain(sub))] == ["fresh"]
        sub.close()
        assert not hub._notifier.wildcard_waiting


@pytest.mark.anyio
async def test_a_keyed_all_namespaces_subscription_waiting_in_a_task_gets_its_events(
) -> None:
    """The task-waiting path (``receive_batch``), on every log: woken by its topic only."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await hub.publish("a", "/x")
        async with hub.subscribe(None, filters=['topic=="/mine"']) as sub:
            got: list[Event] = []

            async def read() -> None:
                while len(got) < 2:
                    got.extend(events_of(await sub.receive_batch()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await until(lambda: sub.waiting)
                await hub.publish("a", "/other")
                await hub.publish_many("b", [PublishItem("/other"), PublishItem("/mine")])
                await hub.publish("a", "/mine")
        assert sorted((e.namespace, e.topic) for e in got) == [("a", "/mine"), ("b", "/mine")]


@pytest.mark.anyio
@pytest.mark.memory_only("a hundred namespaces: one durable log each would be slow, and the "
                         "registration turn does not depend on the log")
async def test_wide_registrations_happen_one_per_turn_of_the_event_loop() -> None:
    """Registering a subscription over more than ``WIDE`` namespaces attaches a cursor in
    each at once: several in flight (one per stream of a client) take turns, with other
    tasks running in between; a narrow one does not wait at all."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        for i in range(WIDE + 1):
            await hub.publish(f"n{i}", "/x")
        steps = [0]  # steps of another task
        opened: list[int] = []
        done = anyio.Event()

        async def other() -> None:
            while not done.is_set():
                steps[0] += 1
                await anyio.lowlevel.checkpoint()

        async def register(sub: Subscription) -> None:
            await hub.prepare(sub)
            sub.open()
            opened.append(steps[0])

        wide = [hub.subscribe(None) for _ in range(4)] + [
            hub.subscribe([f"n{i}" for i in range(WIDE + 1)])]
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            async with anyio.create_task_group() as registering:
                for sub in wide:
                    registering.start_soon(register, sub)
            narrow = hub.subscribe([f"n{i}" for i in range(WIDE)])
            before = steps[0]
            await hub.prepare(narrow)
            assert steps[0] == before  # not a turn waited
            narrow.open()
            done.set()
        assert len(set(opened)) == len(wide), opened  # each in a turn of its own
        assert all(len(sub.cursors) == WIDE + 1 for sub in wide)
        for sub in (*wide, narrow):
            sub.close()

"""Subscriptions that read many namespaces (all-namespaces ones over hundreds of
namespaces: issue 9's ``all_ns_subscriptions``). What a read, a park and a wake-up of
one of them costs must not grow with the namespaces it does not hear from: parking waits
once in the hub's notifier (not in each namespace), a keyed one is woken only by an event
with one of its keys, in any namespace, including one created after it parked."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import broadcaster
from broadcaster import Event, HubConfig, PublishItem, Subscription
from broadcaster._core import _subscription
from broadcaster._core._config import FilterConfig
from broadcaster._core._cursor import Cursor
from broadcaster._core._hub import WIDE
from broadcaster._core._namespace import NamespaceState

from .._ticker import Ticker
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


async def _register_together(hub: broadcaster.Broadcaster, subs: list[Subscription],
                             when: Callable[[], float] = anyio.current_time) -> list[float]:
    """Register *subs* from tasks of their own at once (as streams of a client do); *when*
    each registered, in order (the event loop's clock, or e.g. a ticker's turn)."""
    opened: list[float] = []

    async def register(sub: Subscription) -> None:
        await open_all(hub, sub)
        opened.append(when())

    async with anyio.create_task_group() as tg:
        for sub in subs:
            tg.start_soon(register, sub)
    return opened


@pytest.mark.anyio
@pytest.mark.memory_only("a hundred namespaces: one durable log each would be slow, and the "
                         "registration turn does not depend on the log")
async def test_wide_registrations_happen_one_per_turn_of_the_event_loop() -> None:
    """Registering a subscription over more than ``WIDE`` namespaces attaches a cursor in
    each at once: several in flight (one per stream of a client) take turns, with other
    tasks running in between; a narrow one does not wait at all."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, WIDE + 1)
        ticker = Ticker()
        wide = [hub.subscribe(None) for _ in range(4)] + [
            hub.subscribe([f"n{i}" for i in range(WIDE + 1)])]
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            opened = await _register_together(hub, wide, lambda: ticker.turn)
            narrow = hub.subscribe([f"n{i}" for i in range(WIDE)])
            before = ticker.turn
            await hub.prepare(narrow)
            assert ticker.turn == before  # not a turn waited
            narrow.open()
            ticker.running = False
        assert len(set(opened)) == len(wide), opened  # each in a turn of its own
        assert all(len(sub.cursors) == WIDE + 1 for sub in wide)
        for sub in (*wide, narrow):
            sub.close()


@pytest.mark.anyio
@pytest.mark.memory_only("a hundred namespaces: one durable log each would be slow, and the "
                         "closing turn does not depend on the log")
async def test_wide_subscriptions_closing_together_close_one_per_turn() -> None:
    """Closing a subscription over more than ``WIDE`` namespaces walks them all:
    ``aclose`` (and ``async with`` on exit) of several at once take turns, even when
    their tasks are cancelled; ``close`` and a narrow one's ``aclose`` do not wait."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, WIDE + 1)
        ticker = Ticker()
        closed: list[int] = []
        entered = anyio.Event()
        count = [0]

        async def hold(sub: Subscription) -> None:
            try:
                async with sub:
                    count[0] += 1
                    if count[0] == 4:
                        entered.set()
                    await anyio.sleep_forever()
            finally:
                closed.append(ticker.turn)

        wide = [hub.subscribe(None) for _ in range(4)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            async with anyio.create_task_group() as holding:
                for sub in wide:
                    holding.start_soon(hold, sub)
                await entered.wait()
                assert hub.subscription_count == 4
                holding.cancel_scope.cancel()  # all four leave together
            assert hub.subscription_count == 0
            narrow = hub.subscribe([f"n{i}" for i in range(WIDE)])
            await open_all(hub, narrow)
            before = ticker.turn
            await narrow.aclose()
            assert ticker.turn == before and not narrow.cursors  # closed, no turn waited
            ticker.running = False
        assert len(set(closed)) == len(wide), closed  # each in a turn of its own
        assert all(not sub.cursors for sub in wide)


class StepClock:
    """A ``cpu_clock`` that moves *step* seconds at each reading: wide work measured
    with it took exactly *step* (one reading when it starts, one when it ends)."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.t = 0.0

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@pytest.mark.trio
@pytest.mark.memory_only("a hundred namespaces: one durable log each would be slow, and "
                         "the pacing does not depend on the log")
@pytest.mark.parametrize("share", [0.25, 0.5])
async def test_wide_work_takes_at_most_its_share_of_the_loop(
        autojump_clock: trio.testing.MockClock, share: float) -> None:
    """Registrations of wide subscriptions are paced: after wide work that took t
    seconds (``cpu_clock``), the next registration waits t * (1 - share) / share, so
    that a client opening all-namespaces subscriptions as fast as it can takes at most
    ``wide_work_share`` of the loop. Closes are not delayed (they free what a
    registration took), but their time counts against the next registration."""
    step = 0.004
    config = HubConfig(heartbeat_interval=3600.0, wide_work_share=share,
                       cpu_clock=StepClock(step))
    pause = step * (1 - share) / share
    async with Broadcaster(config) as hub:
        await _many(hub, WIDE + 1)
        wide = [hub.subscribe(None) for _ in range(4)]
        start = anyio.current_time()
        opened = await _register_together(hub, wide)
        # the first at once, each of the others one pause after the one before
        assert opened[0] == pytest.approx(start)
        assert [b - a for a, b in itertools.pairwise(opened)] == pytest.approx(
            [pause] * 3)
        assert all(len(sub.cursors) == WIDE + 1 for sub in wide)
        # closing all four: not delayed, each counted
        before = anyio.current_time()
        for sub in wide:
            await sub.aclose()
        assert anyio.current_time() == pytest.approx(before)
        late = hub.subscribe(None)
        (at,) = await _register_together(hub, [late])
        # the last registration's pause, then the four closes'
        assert at == pytest.approx(before + pause * 5)
        # 5 registrations and 4 closes took a step each; 3 pauses, then 5 pauses waited
        stats = hub.statistics()
        assert stats.wide_work_seconds == pytest.approx(9 * step)
        assert stats.wide_work_waited_seconds == pytest.approx(8 * pause)
        # narrow subscriptions are neither paced nor counted
        narrow = [hub.subscribe([f"n{i}" for i in range(WIDE)]) for _ in range(3)]
        before = anyio.current_time()
        await _register_together(hub, narrow)
        for sub in narrow:
            await sub.aclose()
        assert anyio.current_time() == pytest.approx(before)
        assert hub.statistics().wide_work_seconds == pytest.approx(9 * step)
        for sub in (*narrow, late):
            sub.close()


@pytest.mark.trio
@pytest.mark.memory_only("a hundred namespaces: one durable log each would be slow")
async def test_a_share_of_one_registers_wide_subscriptions_back_to_back(
        autojump_clock: trio.testing.MockClock) -> None:
    config = HubConfig(heartbeat_interval=3600.0, wide_work_share=1.0,
                       cpu_clock=StepClock(0.004))
    async with Broadcaster(config) as hub:
        await _many(hub, WIDE + 1)
        start = anyio.current_time()
        wide = [hub.subscribe(None) for _ in range(4)]
        assert await _register_together(hub, wide) == pytest.approx([start] * 4)
        for sub in wide:
            sub.close()


@pytest.mark.parametrize("share", [0, -0.1, 1.5, "0.5", None])
def test_wide_work_share_must_be_a_fraction(share: object) -> None:
    with pytest.raises(broadcaster.InvalidArgument, match="wide_work_share"):
        HubConfig(wide_work_share=share)  # type: ignore[arg-type]


# -- reads: what changed, not every cursor -----------------------------------------------

@pytest.mark.anyio
@pytest.mark.memory_only("hundreds of namespaces: one durable log each would be slow, and "
                         "which cursors a read looks at does not depend on the log")
async def test_a_read_of_a_wide_subscription_looks_at_what_changed_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat makes every subscription read: one over 200 namespaces looks at no
    cursor when nothing happened since its last read, and at the two whose namespaces
    had events when two had, not at 200 (250 of them cost over 100 ms of the loop per
    heartbeat when each looked at every cursor)."""
    looked: list[object] = []
    real = _subscription._has_something

    def counting(cursor: Cursor[NamespaceState]) -> bool:
        looked.append(cursor.ns.name)
        return real(cursor)

    monkeypatch.setattr(_subscription, "_has_something", counting)
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, NAMESPACES)
        sub = hub.subscribe(None)
        await open_all(hub, sub)
        assert drain(sub) == []  # the first read looks at every cursor
        assert len(looked) >= NAMESPACES
        looked.clear()
        assert drain(sub) == [] and looked == []
        await hub.publish("n7", "/t")
        await hub.publish("n150", "/t")
        await hub.publish("n7", "/t")
        got = events_of(drain(sub))
        assert [(e.namespace, e.sequence) for e in got] == [("n7", 2), ("n7", 3), ("n150", 2)]
        assert set(looked) == {"n150", "n7"} and len(looked) <= 4  # (before and after)
        # a notice that came without an event (the log's availability) is looked at too
        looked.clear()
        hub._namespaces["n42"].availability_changed(False, "log down")
        items = drain(sub)
        assert [(type(i).__name__, i.namespace) for i in items] == [
            ("AvailabilityNotice", "n42")]
        assert set(looked) == {"n42"}


@pytest.mark.anyio
@pytest.mark.memory_only("hundreds of namespaces: one durable log each would be slow")
async def test_a_wide_read_cut_short_by_its_limit_goes_on_where_it_stopped() -> None:
    """Reads of 5 events at a time: every cursor with events left is looked at again by
    the next read, though its namespace had nothing new; all 3 x 100 events come, each
    namespace's in order."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, 100)
        sub = hub.subscribe(None, policy=broadcaster.Policy.drop_newest(10))
        await open_all(hub, sub)
        assert drain(sub) == []
        for i in range(100):
            for _ in range(3):
                await hub.publish(f"n{i}", "/t")
        got: dict[str, list[int]] = {}
        for _ in range(100):  # bounded: 300 events, 5 a read
            try:
                items = sub.receive_batch_nowait(5)
            except anyio.WouldBlock:
                break
            assert len(events_of(items)) <= 5
            for e in events_of(items):
                got.setdefault(e.namespace, []).append(e.sequence)
        assert got == {f"n{i}": [2, 3, 4] for i in range(100)}


WIDE_NS = [f"w{i}" for i in range(WIDE + 6)]
WIDE_SUBS: list[tuple[tuple[str, ...] | None, broadcaster.Policy, tuple[str, ...], int | None]] = [
    (None, broadcaster.Policy.drop_oldest(5), (), None),
    (None, broadcaster.Policy.drop_newest(4), (), 0),  # replays every namespace's history
    (tuple(WIDE_NS[:-1]), broadcaster.Policy.retry(4, max_attempts=1, initial_backoff=1000.0,
                                                    max_backoff=1000.0), (), None),
    (None, broadcaster.Policy.drop_oldest(6), ('topic=="/x"',), None),  # keyed
]

wide_steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, len(WIDE_NS) - 1),
                  st.sampled_from(["/x", "/y"]), st.integers(1, 8)),
        st.tuples(st.just("read"), st.integers(0, len(WIDE_SUBS) - 1), st.integers(1, 9)),
        st.tuples(st.just("unavailable"), st.integers(0, len(WIDE_NS) - 1)),
    ),
    max_size=50,
)


@settings(max_examples=60, deadline=None)
@given(steps=wide_steps, wide=st.booleans())
def test_wide_reads_deliver_what_reads_of_every_cursor_deliver(
        steps: list[tuple[Any, ...]], wide: bool) -> None:
    """Random publishes, short reads and availability notices over 70 namespaces, read
    through the list of namespaces appended to (*wide*) or looking at every cursor: every
    subscription sees each namespace's sequences increase, delivered + reported dropped
    == published (nothing left behind in a cursor no read looked at), and both
    availability notices of each outage."""
    async def scenario() -> None:
        published: dict[str, dict[str, int]] = {"/x": defaultdict(int), "/y": defaultdict(int)}
        seen = [defaultdict(list) for _ in WIDE_SUBS]  # type: ignore[var-annotated]
        dropped = [defaultdict(int) for _ in WIDE_SUBS]  # type: ignore[var-annotated]
        told = [defaultdict(int) for _ in WIDE_SUBS]  # type: ignore[var-annotated]
        outages: dict[str, int] = defaultdict(int)

        def record(i: int, items: list[Any]) -> None:
            for item in items:
                if isinstance(item, Event):
                    seen[i][item.namespace].append(item.sequence)
                elif isinstance(item, broadcaster.DropNotice):
                    dropped[i][item.namespace] += item.count
                elif isinstance(item, broadcaster.AvailabilityNotice):
                    told[i][item.namespace] += 1

        async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
            for ns in WIDE_NS:
                await hub.publish(ns, "/x")
                published["/x"][ns] += 1
            subs = [hub.subscribe(nss, policy=p, filters=f, since=since)
                    for nss, p, f, since in WIDE_SUBS]
            await open_all(hub, *subs)
            for step in steps:
                if step[0] == "publish":
                    _, n, topic, count = step
                    for _ in range(count):
                        await hub.publish(WIDE_NS[n], topic)
                    published[topic][WIDE_NS[n]] += count
                elif step[0] == "read":
                    with contextlib.suppress(anyio.WouldBlock):
                        record(step[1], subs[step[1]].receive_batch_nowait(step[2]))
                else:
                    ns = hub._namespaces[WIDE_NS[step[1]]]
                    ns.availability_changed(False, "down")
                    ns.availability_changed(True, "")
                    outages[ns.name] += 1
            for i, sub in enumerate(subs):
                for _ in range(1000):  # bounded
                    try:
                        record(i, sub.receive_batch_nowait(1000))
                    except anyio.WouldBlock:
                        break
                sub.close()
        for i, (nss, _, filters, since) in enumerate(WIDE_SUBS):
            for ns in nss or WIDE_NS:
                seqs = seen[i][ns]
                assert seqs == sorted(set(seqs)), (i, ns, seqs)
                want = published["/x"][ns] + (0 if filters else published["/y"][ns])
                if since is None:  # live from the subscription: not the first event
                    want -= 1
                assert len(seqs) + dropped[i][ns] == want, (i, ns)
                assert told[i][ns] == 2 * outages[ns], (i, ns)

    with pytest.MonkeyPatch.context() as mp:
        if not wide:
            mp.setattr(_subscription, "WIDE", 10**9)
        anyio.run(scenario)


@pytest.mark.anyio
@pytest.mark.memory_only("many namespaces: one durable log each would be slow, and "
                         "attaching and waking do not depend on the log")
async def test_an_all_namespaces_subscription_reads_only_the_namespaces_its_filters_name(
) -> None:
    """``ctr events namespace==k8s.io``: a cursor, a read and a wake-up in the named
    namespaces only, whatever is published elsewhere; those created later are joined."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await _many(hub, 20)
        sub = hub.subscribe(None, filters=['namespace=="n3"',
                                           'namespace=="late",topic=="/mine"'])
        everything = hub.subscribe(None, filters=['namespace=="n3"', 'topic=="/x"'])
        await open_all(hub, sub, everything)
        assert sub.within == {"n3", "late"} and everything.within is None
        assert set(sub.cursors) == {"n3"}  # "late" does not exist yet
        assert len(everything.cursors) == 20  # one filter does not name a namespace
        waker = Waker()
        sub.park_waker(waker)
        before = hub.statistics().subscription_wakeups
        for i in range(20):
            if i != 3:
                await hub.publish(f"n{i}", "/other")
        await hub.publish("other-new", "/mine")  # a namespace created after it parked
        await until(lambda: not hub._notifier._dirty)
        assert waker.count == 0
        assert hub.statistics().subscription_wakeups == before  # nobody waits elsewhere
        assert set(sub.cursors) == {"n3"}
        await hub.publish("n3", "/anything")
        await until(lambda: waker.count == 1)
        sub.unpark()
        assert [(e.namespace, e.topic) for e in events_of(drain(sub))] == [("n3", "/anything")]
        sub.park_waker(waker)
        await hub.publish("late", "/other")  # created now: joined, and its events wake it
        await until(lambda: waker.count == 2)
        assert set(sub.cursors) == {"n3", "late"}
        await hub.publish("late", "/mine")
        sub.unpark()
        assert [(e.namespace, e.topic) for e in events_of(drain(sub))] == [("late", "/mine")]
        sub.close()
        everything.close()
        assert not hub._notifier.wildcard_within and not hub._notifier.wildcard_waiting


@pytest.mark.anyio
async def test_a_subscription_narrowed_by_namespace_filters_gets_its_events_in_a_task(
) -> None:
    """The task-waiting path (``receive_batch``), on every log, with another namespace
    flooded; the access predicate still applies on top of the filters."""
    async with Broadcaster(HubConfig(heartbeat_interval=3600.0)) as hub:
        await hub.publish("busy", "/x")
        async with hub.subscribe(None, filters=['namespace=="quiet"',
                                                'namespace=="hidden"'],
                                 admit=lambda name: name != "hidden") as sub:
            got: list[Event] = []

            async def read() -> None:
                while len(got) < 2:
                    got.extend(e for e in await sub.receive_batch(100)
                               if isinstance(e, Event))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                for _ in range(50):
                    await hub.publish("busy", "/x")
                await hub.publish("hidden", "/x")
                await hub.publish("quiet", "/one")
                await hub.publish("quiet", "/two")
            assert [(e.namespace, e.topic) for e in got] == [("quiet", "/one"),
                                                             ("quiet", "/two")]
            assert set(sub.cursors) == {"quiet"}


@pytest.mark.anyio
@pytest.mark.memory_only("attaching does not depend on the log")
async def test_namespace_filters_over_more_than_wide_namespaces_do_not_narrow() -> None:
    # (parking under each name costs as many set operations: a configuration allowing
    # more filters than WIDE, the default's 64, gets the ordinary all-namespaces kind)
    config = HubConfig(heartbeat_interval=3600.0, filters=FilterConfig(max_filters=WIDE + 1))
    async with Broadcaster(config) as hub:
        await _many(hub, 3)
        filters = [f'namespace=="m{i}"' for i in range(WIDE + 1)]
        async with hub.subscribe(None, filters=filters) as sub:
            assert sub.within is None and set(sub.cursors) == {"n0", "n1", "n2"}
            await hub.publish("m7", "/x")
            await hub.publish("n1", "/x")
            await until(lambda: "m7" in sub.cursors)
            assert [e.namespace for e in events_of(drain(sub))] == ["m7"]

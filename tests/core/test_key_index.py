"""The topic and field index (``_topics.py``): subscriptions filtering
``topic=="X",event.<path>==V`` park under ``(X, path, V)``; the notifier reads the
fields, once per event; only an event with a subscription's key wakes it; its cursor
reads only the events listed for its keys; losses are reported only where an event with
one of its keys was trimmed."""

from __future__ import annotations

import json

import anyio
import pytest
import trio.testing

from broadcaster import (
    DropNotice,
    Event,
    Heartbeat,
    HubConfig,
    NamespaceConfig,
    Policy,
    PublishItem,
    Retention,
)
from broadcaster._core._topics import MAX_UNLISTED_TRIMMED, TopicIndex, topic_key

from ._util import Broadcaster, drain, events_of, notices_of, open_all, until

JSON = "application/json"
EXIT = "/tasks/exit"


def exit_item(container: str, topic: str = EXIT) -> PublishItem:
    return PublishItem(topic, json.dumps({"id": container}).encode(), JSON)


def exit_filter(container: str) -> list[str]:
    return [f'topic=="{EXIT}",event.id=="{container}"']


class Waker:
    """Counts the hub's wake-ups of a subscription parked with ``park_waker``."""

    def __init__(self) -> None:
        self.count = 0

    def set(self) -> None:
        self.count += 1


# -- the index on its own ---------------------------------------------------------------


def _event(seq: int, topic: str, container: str) -> Event:
    payload = json.dumps({"id": container}).encode()
    return Event("a", topic, payload, JSON, {}, 0, seq, 0.0, 100)


class _Fields:
    """A payload reader that counts what it decodes."""

    def __init__(self) -> None:
        self.decoded: list[int] = []

    def __call__(self, event: Event) -> object:
        self.decoded.append(event.sequence)
        value = json.loads(event.payload)["id"]
        return lambda path: (value, True) if tuple(path) == ("id",) else ("", False)


def _index() -> tuple[TopicIndex, _Fields, dict[object, object], set[object]]:
    fields, waited, burst = _Fields(), {}, set()
    return TopicIndex(fields, waited, burst), fields, waited, burst  # type: ignore[arg-type]


C1 = (EXIT, ("id",), "c1")
C2 = (EXIT, ("id",), "c2")


def test_field_keys_are_listed_once_the_notifier_read_the_fields() -> None:
    index, fields, waited, burst = _index()
    index.watch([C1, C2], head=0)
    waited[C1] = object()
    events = [_event(1, EXIT, "c2"), _event(2, "/tasks/start", "c1"), _event(3, EXIT, "c1"),
              _event(4, EXIT, "c3")]
    index.note(events, first=1)
    assert fields.decoded == []  # appending decodes nothing
    assert [e.sequence for e in index.pending] == [1, 3, 4]  # only the watched topic
    # before the notifier ran: nothing is known, a reader must read from the start
    assert index.listing(frozenset({C1}), 1, 5) == ([], 1)
    assert not index.note_fields(first=1, limit=10)
    assert fields.decoded == [1, 3, 4]
    assert burst == {C1}  # waited for: its subscriptions are to be woken; C2 is not waited
    assert index.listing(frozenset({C1}), 1, 5) == ([3], 5)
    assert index.listing(frozenset({C2}), 1, 5) == ([1], 5)
    assert index.listing(frozenset({C1, C2}), 1, 5) == ([1, 3], 5)
    assert index.listing(frozenset({C1}), 4, 5) == ([], 5)
    # new events: listed up to the first one still pending
    index.note([_event(5, EXIT, "c1"), _event(6, "/tasks/start", "c1")], first=1)
    assert index.listing(frozenset({C1}), 1, 7) == ([3], 5)
    index.note_fields(first=1, limit=10)
    assert index.listing(frozenset({C1}), 1, 7) == ([3, 5], 7)


def test_a_key_watched_late_is_unknown_before_its_watch() -> None:
    index, _, _, _ = _index()
    index.note([_event(1, EXIT, "c1")], first=1)
    index.watch([C1], head=1)
    assert index.listing(frozenset({C1}), 1, 2) == (None, 1)  # read it all
    assert index.listing(frozenset({C1}), 2, 2) == ([], 2)
    assert index.lost_since(frozenset({C1}), 1, first=2)  # may have had it
    assert not index.lost_since(frozenset({C1}), 2, first=3)


def test_losses_are_exact_even_for_events_trimmed_before_the_notifier_ran() -> None:
    index, fields, _, _ = _index()
    index.watch([C1, C2], head=0)
    index.note([_event(s, EXIT, "c1" if s == 3 else "c2") for s in range(1, 6)], first=5)
    # events 1-4 were trimmed in the append itself; the first reader that asks reads them
    assert index.lost_since(frozenset({C1}), 1, first=5)
    assert fields.decoded == [1, 2, 3, 4]  # only the trimmed ones; 5 waits for the notifier
    assert not index.lost_since(frozenset({C1}), 4, first=5)
    assert index.lost_since(frozenset({C2}), 4, first=5)
    assert not index.lost_since(frozenset({C2}), 5, first=5)
    index.note_fields(first=5, limit=10)
    assert fields.decoded == [1, 2, 3, 4, 5]  # each event once


def test_trimmed_pending_events_are_bounded_and_then_given_up_conservatively() -> None:
    index, fields, _, _ = _index()
    index.watch([C1], head=0)
    n = MAX_UNLISTED_TRIMMED + 10
    index.note([_event(s, EXIT, "c2") for s in range(1, n + 1)], first=n + 1)
    assert len(index.pending) == MAX_UNLISTED_TRIMMED
    assert index.lost_since(frozenset({C1}), 1, first=n + 1)  # given up: may have had it
    assert not index.lost_since(frozenset({C1}), 11, first=n + 1)  # read: it had not
    assert len(fields.decoded) == MAX_UNLISTED_TRIMMED


def test_topic_keys_skip_a_range_only_when_the_topic_is_absent() -> None:
    index, fields, _, _ = _index()
    key = topic_key(EXIT)
    index.watch([key], head=0)
    index.note([_event(1, "/tasks/start", "c1"), _event(2, EXIT, "c1")], first=1)
    assert fields.decoded == [] and not index.pending  # topic keys need no fields
    assert index.listing(frozenset({key}), 1, 3) == (None, 1)  # the shared filtered read
    assert index.listing(frozenset({key}), 3, 3) == ([], 3)
    index.note([_event(3, "/tasks/start", "c1")], first=1)
    assert index.listing(frozenset({key}), 3, 4) == ([], 4)


def test_sequence_lists_stay_within_retention() -> None:
    """A key published at every event with retention sliding by one: its list keeps about
    the retained events (amortised trimming), and losses stay exact."""
    index, _, _, _ = _index()
    key = topic_key(EXIT)
    index.watch([key], head=0)
    for seq in range(1, 10_001):
        index.note([_event(seq, EXIT, "c1")], first=max(1, seq - 99))
    seqs = index._seqs[key]
    assert len(seqs) <= 200 and seqs[-1] == 10_000
    assert index.lost_since(frozenset({key}), 9_900, first=9_902)
    assert not index.lost_since(frozenset({key}), 9_902, first=9_902)
    index.trim(first=9_902)
    assert index._seqs[key][0] == 9_902


def test_unwatching_the_last_subscription_forgets_the_key() -> None:
    index, _, _, _ = _index()
    index.watch([C1], head=0)
    index.watch([C1, C2], head=0)
    index.unwatch([C1, C2])
    index.note([_event(1, EXIT, "c2")], first=1)
    assert index.watchers == {C1: 1}
    index.unwatch([C1])
    assert index.watchers == {} and index._fields == {} and index._seqs == {}
    index.note([_event(2, EXIT, "c1")], first=1)
    assert not index.pending or index.pending[-1].sequence == 1  # nothing queued for it


# -- in a hub, on every log backend -------------------------------------------------------


@pytest.mark.anyio
async def test_only_the_watcher_of_the_published_key_is_woken() -> None:
    decoded: list[str] = []

    def fields(type_url: str, payload: bytes) -> object:
        decoded.append(type_url)
        value = json.loads(payload)["id"]
        return lambda path: (value, True) if tuple(path) == ("id",) else ("", False)

    config = HubConfig(payload_fields=fields, heartbeat_interval=3600.0)  # type: ignore[arg-type]
    async with Broadcaster(config) as hub:
        subs = [hub.subscribe("a", filters=exit_filter(f"c{i}")) for i in range(20)]
        plain = hub.subscribe("a", filters=['topic=="/tasks/start"'])
        await open_all(hub, *subs, plain)
        wakers = [Waker() for _ in subs]
        for sub, waker in zip(subs, wakers, strict=True):
            sub.park_waker(waker)
        before = hub.statistics().subscription_wakeups
        for _ in range(5):
            await hub.publish_many("a", [exit_item("c3"), exit_item("c7", "/tasks/start")])
            await until(lambda: not hub._namespaces["a"].unnoted)
        await until(lambda: wakers[3].count == 1)
        await until(lambda: len(decoded) == 5)
        assert [w.count for w in wakers] == [1 if i == 3 else 0 for i in range(20)]
        # five exits decoded once each, for twenty watchers; the starts not at all
        assert decoded == ["application/json"] * 5
        assert hub.statistics().subscription_wakeups - before == 1
        subs[3].unpark()
        got = events_of(drain(subs[3]))
        assert [json.loads(e.payload)["id"] for e in got] == ["c3"] * 5
        assert events_of(drain(subs[4])) == []
        assert len(events_of(drain(plain))) == 5
        for sub in (*subs, plain):
            sub.close()


@pytest.mark.anyio
async def test_a_keyed_watcher_reads_exactly_its_events_across_many_others() -> None:
    """Every publish interleaved with reads: each watcher gets its own exits, in order,
    and only those (the rest of its filter still applies)."""
    async with Broadcaster() as hub:
        subs = [hub.subscribe("a", filters=exit_filter(f"c{i}")) for i in range(4)]
        labelled = hub.subscribe(
            "a", filters=[f'topic=="{EXIT}",event.id=="c1",labels.keep==yes'])
        await open_all(hub, *subs, labelled)
        got: list[list[int]] = [[] for _ in subs]
        expected: list[list[int]] = [[] for _ in subs]
        kept: list[int] = []
        for round_ in range(30):
            container = f"c{round_ % 4}"
            items = [exit_item(container, "/tasks/create"), exit_item(container),
                     PublishItem(EXIT, json.dumps({"id": container}).encode(), JSON,
                                 {"keep": "yes"} if round_ % 3 == 0 else {})]
            seqs = await hub.publish_many("a", items)
            expected[round_ % 4] += seqs[1:]
            if container == "c1" and round_ % 3 == 0:
                kept.append(seqs[2])
            if round_ % 5 == 0:
                await anyio.wait_all_tasks_blocked()  # sometimes the notifier runs first
            for i, sub in enumerate(subs):
                if (round_ + i) % 2:
                    got[i] += [e.sequence for e in events_of(drain(sub))]
        await until(lambda: not hub._namespaces["a"].unnoted)
        for i, sub in enumerate(subs):
            got[i] += [e.sequence for e in events_of(drain(sub))]
        assert got == expected
        assert [e.sequence for e in events_of(drain(labelled))] == kept
        for sub in (*subs, labelled):
            sub.close()


@pytest.mark.anyio
async def test_a_keyed_subscription_resumes_with_since() -> None:
    async with Broadcaster() as hub:
        seqs = await hub.publish_many("a", [exit_item(f"c{i % 3}") for i in range(9)])
        sub = hub.subscribe("a", filters=exit_filter("c1"), since=seqs[2])
        await open_all(hub, sub)
        more = await hub.publish_many("a", [exit_item("c1"), exit_item("c2")])
        await until(lambda: not hub._namespaces["a"].unnoted)
        got = [e.sequence for e in events_of(drain(sub))]
        assert got == [seqs[4], seqs[7], more[0]]
        sub.close()


@pytest.mark.anyio
@pytest.mark.memory_only("retention by count is the memory log's")
async def test_trimmed_events_count_as_lost_only_where_one_had_its_key() -> None:
    config = HubConfig(default_namespace=NamespaceConfig(retention=Retention(max_events=4)))
    async with Broadcaster(config) as hub:
        sub = hub.subscribe("a", filters=exit_filter("c1"), policy=Policy.drop_newest(100))
        await open_all(hub, sub)
        await hub.publish_many("a", [exit_item("c2") for _ in range(10)])
        await anyio.wait_all_tasks_blocked()
        assert drain(sub) == []  # ten trimmed, none of them its own
        # its exit is trimmed within the very append, before the notifier could read it
        seqs = await hub.publish_many("a", [exit_item("c2"), exit_item("c1")]
                                      + [exit_item("c2") for _ in range(8)])
        items = drain(sub)
        assert events_of(items) == []
        [notice] = notices_of(items)
        assert notice.first_sequence <= seqs[1] <= notice.last_sequence
        # retained: delivered
        last = await hub.publish("a", EXIT, json.dumps({"id": "c1"}).encode(), type_url=JSON)
        await anyio.wait_all_tasks_blocked()
        assert [e.sequence for e in events_of(drain(sub))] == [last]
        sub.close()


@pytest.mark.trio
async def test_a_parked_keyed_watcher_gets_heartbeats(
    autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=3)
    async with Broadcaster(config) as hub:
        sub = hub.subscribe("a", filters=exit_filter("c1"))
        await open_all(hub, sub)
        for _ in range(5):
            await hub.publish("a", EXIT, json.dumps({"id": "c2"}).encode(), type_url=JSON)
        items = await sub.receive_batch()
        assert [type(i) for i in items] == [Heartbeat]
        await hub.publish("a", EXIT, json.dumps({"id": "c1"}).encode(), type_url=JSON)
        items = await sub.receive_batch()
        assert [e.sequence for e in events_of(items)] == [6]
        assert not notices_of(items) and not isinstance(items[0], DropNotice)
        sub.close()

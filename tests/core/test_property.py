"""For random publish/consume interleavings, every subscriber sees strictly increasing
sequences per namespace, and delivered + reported-dropped == published."""

from __future__ import annotations

from collections import defaultdict

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster import DropNotice, Event, Policy

from ._util import Broadcaster, drain

NAMESPACES = ("a", "b")
SUBSCRIPTIONS = [
    (("a", "b"), Policy.drop_newest(5)),
    (("a",), Policy.drop_oldest(3)),
    (None, Policy.drop_oldest(7, max_bytes=600)),
    (("b",), Policy.retry(4, max_attempts=1, initial_backoff=1000.0, max_backoff=1000.0)),
]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(NAMESPACES), st.integers(1, 12)),
        st.tuples(st.just("read"), st.integers(0, len(SUBSCRIPTIONS) - 1), st.integers(1, 9)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, backend=st.sampled_from(["asyncio", "trio"]))
def test_sequences_increase_and_nothing_vanishes(steps: list[tuple], backend: str) -> None:
    async def scenario() -> None:
        published: dict[str, int] = defaultdict(int)
        seen: list[dict[str, list[int]]] = [defaultdict(list) for _ in SUBSCRIPTIONS]
        dropped: list[dict[str, int]] = [defaultdict(int) for _ in SUBSCRIPTIONS]

        def record(i: int, items: list) -> None:
            for item in items:
                if isinstance(item, Event):
                    seen[i][item.namespace].append(item.sequence)
                elif isinstance(item, DropNotice):
                    dropped[i][item.namespace] += item.count
                    assert item.first_sequence <= item.last_sequence
                    assert item.count <= item.last_sequence - item.first_sequence + 1

        async with Broadcaster() as hub:
            for ns in NAMESPACES:
                hub.namespace(ns)
            subs = [hub.subscribe(nss, policy=p) for nss, p in SUBSCRIPTIONS]
            for sub in subs:
                await sub.__aenter__()
            for step in steps:
                if step[0] == "publish":
                    _, ns, n = step
                    for _ in range(n):
                        await hub.publish(ns, "/t", b"x" * 20)
                    published[ns] += n
                else:
                    _, i, k = step
                    try:
                        record(i, subs[i].receive_batch_nowait(k))
                    except anyio.WouldBlock:
                        pass
            for i, sub in enumerate(subs):
                while True:
                    try:
                        record(i, sub.receive_batch_nowait(1000))
                    except anyio.WouldBlock:
                        break
                await sub.__aexit__(None, None, None)

        for i, (nss, _) in enumerate(SUBSCRIPTIONS):
            for ns in nss or NAMESPACES:
                seqs = seen[i][ns]
                assert seqs == sorted(set(seqs)), (i, ns, seqs)
                assert len(seqs) + dropped[i][ns] == published[ns], (i, ns)
            for ns in set(seen[i]) - set(nss or NAMESPACES):
                raise AssertionError(f"subscription {i} got events of {ns}")

    anyio.run(scenario, backend=backend)


topic_steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.lists(st.sampled_from(["/x", "/y"]), max_size=6)),
        st.tuples(st.just("read"), st.integers(1, 5)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=topic_steps, backend=st.sampled_from(["asyncio", "trio"]))
def test_a_topic_indexed_filter_sees_what_a_scanning_one_sees(
    steps: list[tuple], backend: str
) -> None:
    """`topic=="/x"` (indexed: parked under /x, skips ranges without /x unread) against
    `topic~="^/x$"` (scanned), same policy, same reads, retention of 8 events: the same
    deliveries; the indexed one reports a loss only where an /x event really was lost,
    and never more than the scanning one."""

    async def scenario() -> None:
        from broadcaster import HubConfig, NamespaceConfig, Retention

        topic_of: dict[int, str] = {}
        config = HubConfig(default_namespace=NamespaceConfig(retention=Retention(max_events=8)))
        async with Broadcaster(config) as hub:
            subs = [hub.subscribe("a", filters=[f], policy=Policy.drop_newest(3))
                    for f in ('topic=="/x"', 'topic~="^/x$"')]
            assert subs[0].topics == frozenset({"/x"}) and subs[1].topics is None
            got: list[list[object]] = [[], []]
            for sub in subs:
                await sub.__aenter__()
            for step in steps:
                if step[0] == "publish":
                    for topic in step[1]:
                        topic_of[await hub.publish("a", topic)] = topic
                    continue
                for sub, out in zip(subs, got, strict=True):
                    try:
                        out.extend(sub.receive_batch_nowait(step[1]))
                    except anyio.WouldBlock:
                        pass
            for sub, out in zip(subs, got, strict=True):
                out.extend(drain(sub))
                await sub.__aexit__(None, None, None)

        indexed, scanned = ([(i.sequence, i.topic) for i in out if isinstance(i, Event)]
                            for out in got)
        assert indexed == scanned
        assert all(topic == "/x" for _, topic in indexed)
        assert [s for s, _ in indexed] == sorted({s for s, _ in indexed})
        published_x = {s for s, t in topic_of.items() if t == "/x"}
        ranges = [[(n.first_sequence, n.last_sequence) for n in out
                   if isinstance(n, DropNotice)] for out in got]
        lost_x = [{s for s in published_x for lo, hi in r if lo <= s <= hi} for r in ranges]
        for lost in lost_x:  # every /x event is delivered or inside a reported loss
            assert {s for s, _ in indexed} | lost == published_x
        # the indexed one reports no range without an /x event in it
        for lo, hi in ranges[0]:
            assert any(lo <= s <= hi for s in published_x), (lo, hi)
        assert sum(n.count for n in got[0] if isinstance(n, DropNotice)) <= sum(
            n.count for n in got[1] if isinstance(n, DropNotice))

    anyio.run(scenario, backend=backend)


field_steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.lists(
            st.tuples(st.sampled_from(["/x", "/y"]), st.sampled_from(["a", "b"])),
            max_size=12)),
        st.tuples(st.just("read"), st.integers(0, 3), st.integers(1, 5)),
        st.tuples(st.just("settle")),  # the notifier (and everyone else) runs
    ),
    max_size=50,
)

#: (indexed filters, their unindexed equivalent, the (topic, id) pairs they match)
FIELD_PAIRS = [
    (['topic=="/x",event.id=="a"'], ['topic~="^/x$",event.id~="^a$"'], {("/x", "a")}),
    (['topic=="/x",event.id=="a"', 'topic=="/y",event.id==b'],
     ['topic~="^/x$",event.id~="^a$"', 'topic~="^/y$",event.id~="^b$"'],
     {("/x", "a"), ("/y", "b")}),
]


@settings(max_examples=150, deadline=None)
@given(steps=field_steps, backend=st.sampled_from(["asyncio", "trio"]))
def test_a_field_indexed_filter_sees_what_a_scanning_one_sees(
    steps: list[tuple], backend: str
) -> None:
    """`topic=="/x",event.id=="a"` (indexed by topic and field: woken and read only for
    its key, fields read by the notifier) against the same filter with `~=` (scanned),
    same policy, same reads, retention of 8 events, batches that retention trims before
    the notifier reads them: the same deliveries; the indexed one reports a loss only
    where a matching event really was lost, and never more than the scanning one."""

    async def scenario() -> None:
        import json

        from broadcaster import HubConfig, NamespaceConfig, PublishItem, Retention

        published: dict[int, tuple[str, str]] = {}
        config = HubConfig(default_namespace=NamespaceConfig(retention=Retention(max_events=8)))
        async with Broadcaster(config) as hub:
            subs = [hub.subscribe("a", filters=f, policy=Policy.drop_newest(3))
                    for indexed, scanned, _ in FIELD_PAIRS for f in (indexed, scanned)]
            assert subs[0].keys is not None and subs[1].keys is None
            got: list[list[object]] = [[] for _ in subs]
            for sub in subs:
                await sub.__aenter__()
            for step in steps:
                if step[0] == "publish":
                    if step[1]:
                        items = [PublishItem(t, json.dumps({"id": i}).encode(),
                                             "application/json") for t, i in step[1]]
                        seqs = await hub.publish_many("a", items)
                        published.update(zip(seqs, step[1], strict=True))
                    continue
                if step[0] == "settle":
                    await anyio.wait_all_tasks_blocked()
                    continue
                pair = step[1] % len(FIELD_PAIRS)
                for i in (2 * pair, 2 * pair + 1):
                    try:
                        got[i].extend(subs[i].receive_batch_nowait(step[2]))
                    except anyio.WouldBlock:
                        pass
            for sub, out in zip(subs, got, strict=True):
                out.extend(drain(sub))
                await sub.__aexit__(None, None, None)

        for p, (_, _, matching) in enumerate(FIELD_PAIRS):
            indexed, scanned = ([i.sequence for i in out if isinstance(i, Event)]
                                for out in got[2 * p: 2 * p + 2])
            assert indexed == scanned
            wanted = {s for s, key in published.items() if key in matching}
            assert set(indexed) <= wanted and indexed == sorted(set(indexed))
            ranges = [[(n.first_sequence, n.last_sequence) for n in out
                       if isinstance(n, DropNotice)] for out in got[2 * p: 2 * p + 2]]
            for r in ranges:  # every matching event is delivered or inside a reported loss
                lost = {s for s in wanted for lo, hi in r if lo <= s <= hi}
                assert set(indexed) | lost == wanted
            for lo, hi in ranges[0]:  # the indexed one: only ranges with a matching event
                assert any(lo <= s <= hi for s in wanted), (lo, hi)
            assert sum(n.count for n in got[2 * p] if isinstance(n, DropNotice)) <= sum(
                n.count for n in got[2 * p + 1] if isinstance(n, DropNotice))

    anyio.run(scenario, backend=backend)

"""A read takes an unfiltered cursor's new events straight from the log when they all
fit its policy and the read's limit, skipping the buffer (``Cursor._take_through``: a
quarter of the cost of each subscription's read). What a reader gets must not depend on
which way its events went: checked against the same steps with the buffer always used."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster import Event, Policy
from broadcaster._core._cursor import Cursor

from ._util import Broadcaster, open_all

NAMESPACES = ["a", "b"]
SUBSCRIPTIONS: list[tuple[Any, Policy | None]] = [
    (("a",), None),
    (("a", "b"), Policy.drop_newest(3)),
    (None, Policy.drop_oldest(5, max_bytes=200)),
    (("b",), Policy.disconnect(6)),
]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(NAMESPACES), st.integers(1, 8)),
        st.tuples(st.just("read"), st.integers(0, len(SUBSCRIPTIONS) - 1), st.integers(1, 9)),
    ),
    max_size=40,
)


async def _run(steps: list[tuple[Any, ...]]) -> list[list[object]]:
    """What each subscription read, step by step (events as (namespace, sequence))."""
    got: list[list[object]] = [[] for _ in SUBSCRIPTIONS]
    async with Broadcaster() as hub:
        subs = [hub.subscribe(nss, policy=p) for nss, p in SUBSCRIPTIONS]
        await open_all(hub, *subs)  # creates the namespaces they name
        for step in steps:
            if step[0] == "publish":
                for _ in range(step[2]):
                    await hub.publish(step[1], "/t", b"x" * 30)
                continue
            _, i, limit = step
            try:
                items = subs[i].receive_batch_nowait(limit)
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError) as exc:
                got[i].append(type(exc).__name__)
                continue
            got[i].append([(x.namespace, x.sequence) if isinstance(x, Event) else repr(x)
                           for x in items])
        for sub in subs:
            sub.close()
    return got


@pytest.mark.memory_only("compares two runs of the same steps: the log does not matter")
@settings(max_examples=120, deadline=None)
@given(steps=steps)
def test_a_read_gets_the_same_straight_from_the_log_as_through_the_buffer(
        steps: list[tuple[Any, ...]]) -> None:
    direct = anyio.run(_run, steps)
    through = Cursor._take_through
    try:
        Cursor._take_through = lambda self, limit, out: -1  # type: ignore[method-assign]
        buffered = anyio.run(_run, steps)
    finally:
        Cursor._take_through = through  # type: ignore[method-assign]
    assert direct == buffered


@pytest.mark.anyio
@pytest.mark.memory_only("counts calls into the buffer, which only the memory log skips")
async def test_new_events_that_fit_skip_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    puts: list[int] = []
    put = Cursor.put

    def counting_put(self: Cursor[Any], events: Any) -> bool:
        puts.append(len(events))
        return put(self, events)

    monkeypatch.setattr(Cursor, "put", counting_put)
    async with Broadcaster() as hub, hub.subscribe("a", policy=Policy.drop_newest(4)) as sub:
        for _ in range(3):
            await hub.publish("a", "/t")
        assert [e.sequence for e in sub.receive_batch_nowait(10)] == [1, 2, 3]
        assert puts == []  # straight from the log
        for _ in range(3):
            await hub.publish("a", "/t")
        assert [e.sequence for e in sub.receive_batch_nowait(2)] == [4, 5]  # over the limit
        assert puts == [3]  # through the buffer, which keeps the third
        assert [e.sequence for e in sub.receive_batch_nowait(10)] == [6]

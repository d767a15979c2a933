"""A subscription's admission predicate: an all-namespaces subscription is attached only
to the namespaces it admits (existing ones, and those created later), and ``readmit``
applies a changed predicate: lost namespaces end the subscription (permission_revoked),
gained ones are attached."""

from __future__ import annotations

import pytest

from broadcaster import Broadcaster, Ended, EndReason, HubConfig

from ._util import drain, events_of

pytestmark = pytest.mark.anyio


async def test_all_namespaces_sees_only_admitted_namespaces_including_later_ones() -> None:
    async with Broadcaster() as hub:
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        allowed = {"a", "c"}
        async with hub.subscribe(None, since=0, admit=allowed.__contains__) as sub:
            assert set(sub.cursors) == {"a"}
            await hub.publish("b", "/x")
            await hub.publish("c", "/x")  # created after the subscription: admitted
            await hub.publish("d", "/x")  # created after, not admitted
            await hub.publish("a", "/x")
            got = [(e.namespace, e.sequence) for e in events_of(drain(sub))]
            assert sorted(got) == [("a", 1), ("a", 2), ("c", 1)]
            assert set(sub.cursors) == {"a", "c"}
            # the others' figures do not count it
            stats = hub.statistics().namespaces
            assert stats["a"].subscribers == 1 and stats["b"].subscribers == 0
            assert stats["d"].subscribers == 0


async def test_readmit_ends_subscriptions_that_lost_a_namespace() -> None:
    async with Broadcaster() as hub:
        readable = {"a", "b"}
        named = hub.subscribe(["a", "b"], admit=lambda ns: ns in readable)
        wildcard = hub.subscribe(None, admit=lambda ns: ns in readable)
        untouched = hub.subscribe(["a"], admit=lambda ns: ns in readable)
        free = hub.subscribe(["b"])  # no predicate: never readmitted
        async with named, wildcard, untouched, free:
            await hub.publish("b", "/x")
            readable.discard("b")
            assert hub.readmit() == 2
            for sub in (named, wildcard):
                items = drain(sub)
                # what was buffered for it is not delivered once it may not read it
                assert events_of(items) == []
                assert isinstance(items[-1], Ended)
                assert items[-1].reason is EndReason.PERMISSION_REVOKED
                assert "namespace 'b'" in items[-1].message
            assert untouched.end_reason is None and free.end_reason is None
            assert [e.namespace for e in events_of(drain(free))] == ["b"]
            assert hub.statistics().namespaces["b"].evicted == {"permission_revoked": 2}
            # new calls see the new predicate; a later publish reaches only those allowed
            await hub.publish("a", "/y")
            assert [e.topic for e in events_of(drain(untouched))] == ["/y"]


async def test_readmit_attaches_namespaces_an_all_namespaces_subscription_gained() -> None:
    async with Broadcaster() as hub:
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        readable = {"a"}
        async with hub.subscribe(None, admit=lambda ns: ns in readable) as sub:
            readable.add("b")
            assert hub.readmit() == 0
            assert set(sub.cursors) == {"a", "b"}
            await hub.publish("b", "/y")  # live from where it was attached
            assert [(e.namespace, e.topic) for e in events_of(drain(sub))] == [("b", "/y")]


async def test_a_readmitted_namespace_that_does_not_fit_the_cursor_budget_ends_it() -> None:
    async with Broadcaster(HubConfig(max_cursors=2)) as hub:
        await hub.publish("a", "/x")
        await hub.publish("b", "/x")
        readable = {"a"}
        async with hub.subscribe(None, admit=lambda ns: ns in readable) as sub, \
                hub.subscribe(["b"]):
            readable.add("b")
            assert hub.readmit() == 1
            items = drain(sub)
            assert isinstance(items[-1], Ended) and items[-1].reason is EndReason.CURSOR_LIMIT


async def test_new_namespaces_cost_cursors_only_for_subscriptions_admitting_them() -> None:
    async with Broadcaster(HubConfig(max_cursors=2)) as hub:
        async with hub.subscribe(None, admit=lambda ns: ns == "mine") as sub:
            for name in ("x", "y", "z"):  # not admitted: no cursor, nothing ended
                await hub.publish(name, "/x")
            assert sub.end_reason is None and hub.statistics().cursors == 0
            await hub.publish("mine", "/x")
            assert hub.statistics().cursors == 1
            assert [e.namespace for e in events_of(drain(sub))] == ["mine"]

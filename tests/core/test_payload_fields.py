"""``event.<field>`` selectors in the hub: JSON payloads, the payload-fields resolver,
and when payloads are decoded (once per event, never at publish, never for others)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from broadcaster import Event, HubConfig
from broadcaster._core._config import FilterConfig
from broadcaster._core._payload import FieldCache, is_json_type, json_fields

from ._util import Broadcaster, drain, events_of, open_all

DOC = {
    "id": "c1",
    "empty": "",
    "n": 3,
    "f": 1.5,
    "yes": True,
    "no": False,
    "nothing": None,
    "obj": {"a": {"b": "deep"}, "io.k8s.pod": "p1"},
    "list": [{"name": "x"}, "y"],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("id",), ("c1", True)),
        (("empty",), ("", True)),  # a JSON member is present when it exists
        (("n",), ("3", True)),
        (("f",), ("1.5", True)),
        (("yes",), ("true", True)),
        (("no",), ("false", True)),
        (("nothing",), ("", False)),
        (("obj",), ("", False)),  # objects and arrays have no value of their own
        (("obj", "a", "b"), ("deep", True)),
        (("obj", "io", "k8s", "pod"), ("p1", True)),  # the rest joined, as labels
        (("obj", "io.k8s.pod"), ("p1", True)),
        (("list", "0", "name"), ("x", True)),
        (("list", "1"), ("y", True)),
        (("list", "2"), ("", False)),
        (("list", "x"), ("", False)),
        (("id", "more"), ("", False)),
        (("missing",), ("", False)),
        ((), ("", False)),
    ],
)
def test_json_fields(path: Sequence[str], expected: tuple[str, bool]) -> None:
    fields = json_fields("application/json", json.dumps(DOC).encode())
    assert fields is not None
    assert fields(path) == expected


@pytest.mark.parametrize(
    ("type_url", "payload", "readable"),
    [
        ("application/json", b"{}", True),
        ("Application/JSON; charset=utf-8", b"{}", True),
        ("application/cloudevents+json", b"{}", True),
        ("text/plain", b"{}", False),
        ("application/json", b"[1]", False),  # not an object
        ("application/json", b"{", False),
        ("application/json", b"\xff", False),
        ("application/json", b"[" * 100_000, False),  # too deep for the decoder
    ],
)
def test_json_payloads_that_can_be_read(type_url: str, payload: bytes, readable: bool) -> None:
    assert (json_fields(type_url, payload) is not None) is readable
    assert is_json_type(type_url) is ("json" in type_url.lower())


def _event(payload: bytes, type_url: str = "application/json", seq: int = 1) -> Event:
    return Event("ns", "/t", payload, type_url, {}, 0, seq, 0.0, 0)


class Counting:
    """A resolver that counts its calls (JSON underneath)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[bytes] = []
        self.fail = fail

    def __call__(self, type_url: str, payload: bytes) -> object:
        self.calls.append(payload)
        if self.fail:
            raise RuntimeError("a resolver bug")
        return json_fields(type_url, payload)


def test_field_cache_decodes_each_event_once_and_is_bounded() -> None:
    resolver = Counting()
    cache = FieldCache(resolver, max_events=3, max_bytes=10_000, max_payload=100)
    events = [_event(b'{"id": "%d"}' % i, seq=i) for i in range(5)]
    for _ in range(3):
        for event in events[:3]:
            fields = cache.fields(event)
            assert fields is not None and fields(("id",))[0] == str(event.sequence)
    assert len(resolver.calls) == 3
    for event in events:
        cache.fields(event)
    assert len(cache) == 3 and len(resolver.calls) == 5
    assert cache.fields(_event(b'{"id": "%s"}' % (b"x" * 100))) is None  # over max_payload
    assert len(resolver.calls) == 5
    small = FieldCache(resolver, max_events=100, max_bytes=600, max_payload=100)
    for event in events:
        small.fields(event)
    assert small.bytes <= 600 and len(small) == 2


def test_a_failing_resolver_means_no_fields_and_is_counted() -> None:
    resolver = Counting(fail=True)
    cache = FieldCache(resolver, max_events=10, max_bytes=10_000, max_payload=100)
    event = _event(b'{"id": "c1"}')
    assert cache.fields(event) is None
    assert cache.fields(event) is None
    assert len(resolver.calls) == 1 and cache.failed == 1



@pytest.mark.anyio
async def test_payloads_are_decoded_once_for_every_subscription_and_never_at_publish() -> None:
    resolver = Counting()
    async with Broadcaster(HubConfig(payload_fields=resolver)) as hub:  # type: ignore[arg-type]
        watchers = [hub.subscribe("ns", filters=[f"event.id==c{i}"]) for i in range(10)]
        plain = hub.subscribe("ns", filters=['topic=="/t",labels.k'])
        everything = hub.subscribe("ns")
        await open_all(hub, *watchers, plain, everything)
        for i in range(10):
            await hub.publish("ns", "/t", json.dumps({"id": f"c{i}"}).encode(),
                              type_url="application/json")
        assert resolver.calls == []  # publishing decodes nothing
        assert len(events_of(drain(plain))) == 0 and len(events_of(drain(everything))) == 10
        assert resolver.calls == []  # nor do subscriptions without event. selectors
        for i, sub in enumerate(watchers):
            assert [e.sequence for e in events_of(drain(sub))] == [i + 1]
        assert len(resolver.calls) == 10  # once per event, for the ten watchers


@pytest.mark.anyio
async def test_unknown_or_undecodable_payloads_have_no_fields() -> None:
    """As in containerd: no value, so ``==`` and presence do not match, ``!=`` does."""
    async with Broadcaster() as hub:
        eq = hub.subscribe("ns", filters=["event.id==c1"])
        present = hub.subscribe("ns", filters=["event.id"])
        ne = hub.subscribe("ns", filters=["event.id!=c1"])
        await open_all(hub, eq, present, ne)
        await hub.publish("ns", "/t", b'{"id": "c1"}', type_url="containerd.events.TaskExit")
        await hub.publish("ns", "/t", b'{"id": "c1"', type_url="application/json")
        await hub.publish("ns", "/t", b'{"id": "c1"}', type_url="application/json")
        await hub.publish("ns", "/t", b'{"id": "c2"}', type_url="application/json")
        assert [e.sequence for e in events_of(drain(eq))] == [3]
        assert [e.sequence for e in events_of(drain(present))] == [3, 4]
        assert [e.sequence for e in events_of(drain(ne))] == [1, 2, 4]


@pytest.mark.anyio
async def test_payloads_over_the_decode_bound_are_not_decoded() -> None:
    resolver = Counting()
    config = HubConfig(payload_fields=resolver,  # type: ignore[arg-type]
                       filters=FilterConfig(max_decode_bytes=64))
    async with Broadcaster(config) as hub, hub.subscribe("ns", filters=["event.id"]) as sub:
        await hub.publish("ns", "/t", b'{"id": "c1"}', type_url="application/json")
        await hub.publish("ns", "/t", b'{"id": "c1", "pad": "%s"}' % (b"x" * 64),
                          type_url="application/json")
        assert [e.sequence for e in events_of(drain(sub))] == [1]
        assert len(resolver.calls) == 1

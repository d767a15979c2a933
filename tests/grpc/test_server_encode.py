"""The spliced Subscribe wire bytes equal what protobuf itself produces."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broadcaster import Event
from broadcaster._proto import MAX_SECONDS, MIN_SECONDS, varint
from broadcaster.grpc._encode import (
    EventEncoder,
    encode_batches,
    encode_event,
    event_field,
    id_prefix,
    pack_run,
)
from broadcaster.v1 import broadcaster_pb2 as pb


def _event(seq: int, payload: bytes = b"p", labels: dict[str, str] | None = None) -> Event:
    return Event("default", "/tasks/exit", payload, "containerd.events.TaskExit",
                 labels or {}, 1_700_000_000_123_456_789, seq, 0.0, 10)


def test_event_is_encoded_once_per_encoder() -> None:
    event = _event(3, labels={"b": "2", "a": "1"})
    encoder = EventEncoder()
    data = encode_event(event, encoder)
    parsed = pb.Event.FromString(data)
    assert (parsed.sequence, parsed.payload.value, dict(parsed.labels)) == (
        3, b"p", {"a": "1", "b": "2"})
    assert parsed.timestamp.ToNanoseconds() == 1_700_000_000_123_456_789
    assert encoder.cache.get(event) == b"\x12" + varint(len(data)) + data
    event.payload = b"changed"  # what the encoder keeps is what is sent from now on
    assert encode_event(event, encoder) == data
    assert encoder.fields([event, event]) == [encoder.field(event)] * 2
    assert encode_event(event) != data  # another encoder encodes it afresh


@given(st.lists(st.tuples(st.binary(max_size=300), st.lists(
    st.text(min_size=1, max_size=20), min_size=1, max_size=3)), min_size=1, max_size=30))
def test_batch_bytes_equal_protobuf_serialization(spec: list[tuple[bytes, list[str]]]) -> None:
    events = [(_event(i + 1, payload), ids) for i, (payload, ids) in enumerate(spec)]
    [data] = encode_batches(((e, [id_prefix(i) for i in ids]) for e, ids in events),
                            max_events=1000, max_bytes=1 << 30)
    expected = pb.SubscribeResponse(event_batch=pb.EventBatch(deliveries=[
        pb.Delivery(subscription_ids=ids, event=pb.Event.FromString(encode_event(e)))
        for e, ids in events]))
    assert data == expected.SerializeToString(deterministic=True)


def test_batches_are_split_by_count_and_size() -> None:
    events = [(_event(i + 1, b"x" * 100), [id_prefix("s")]) for i in range(10)]
    by_count = encode_batches(events, max_events=4, max_bytes=1 << 20)
    assert [len(pb.SubscribeResponse.FromString(m).event_batch.deliveries)
            for m in by_count] == [4, 4, 2]
    by_size = encode_batches(events, max_events=100, max_bytes=500)
    sizes = [len(pb.SubscribeResponse.FromString(m).event_batch.deliveries) for m in by_size]
    assert sum(sizes) == 10 and max(sizes) < 10 and all(len(m) < 600 for m in by_size)
    sequences = [d.event.sequence for m in by_size
                 for d in pb.SubscribeResponse.FromString(m).event_batch.deliveries]
    assert sequences == list(range(1, 11))


_texts = st.text(max_size=12)


@given(ns=_texts, topic=_texts, type_url=_texts, payload=st.binary(max_size=300),
       labels=st.dictionaries(st.text(min_size=1, max_size=8), _texts, max_size=4),
       timestamp_ns=st.integers(min_value=MIN_SECONDS * 10**9,
                                max_value=MAX_SECONDS * 10**9 + 999_999_999),
       seq=st.integers(min_value=0, max_value=2**63))
@example(ns="", topic="", type_url="", payload=b"", labels={}, timestamp_ns=-1, seq=0)
@example(ns="", topic="", type_url="", payload=b"", labels={},
         timestamp_ns=MIN_SECONDS * 10**9, seq=0)
def test_hand_spliced_event_equals_protobuf(ns: str, topic: str, type_url: str, payload: bytes,
                                            labels: dict[str, str], timestamp_ns: int,
                                            seq: int) -> None:
    event = Event(ns, topic, payload, type_url, labels, timestamp_ns, seq, 0.0, 10)
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    expected = pb.Event(namespace=ns, topic=topic, labels=labels, sequence=seq)
    expected.timestamp.seconds, expected.timestamp.nanos = seconds, nanos
    expected.timestamp.SetInParent()
    if payload or type_url:
        expected.payload.type_url, expected.payload.value = type_url, payload
        expected.payload.SetInParent()
    data = expected.SerializeToString(deterministic=True)
    encoder = EventEncoder(max_heads=2)
    assert encoder.serialize(event) == data
    assert encode_event(event) == data
    assert event_field(event) == b"\x12" + varint(len(data)) + data


def test_pack_run_equals_general_path() -> None:
    events = [_event(i + 1, b"x" * (i * 7)) for i in range(40)]
    ids = [id_prefix("a"), id_prefix("bb")]
    general = encode_batches(((e, ids) for e in events), max_events=16, max_bytes=2000)
    assert pack_run(events, b"".join(ids), 16, 2000) == general
    counts = [len(pb.SubscribeResponse.FromString(m).event_batch.deliveries) for m in general]
    assert sum(counts) == 40 and len(counts) > 2 and max(counts) <= 16


@given(st.lists(st.binary(max_size=400), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=20_000))
@example([b"x"] * 8, 8, 1 << 20)  # a run spliced at once: exactly at max_events
@example([b"x" * 100] * 9, 100, 1200)  # ... that does not fit max_bytes
@example([b"x" * 3000], 1, 10)  # one delivery larger than max_bytes goes out alone
def test_pack_run_equals_the_general_path_at_any_length_and_bound(
        payloads: list[bytes], max_events: int, max_bytes: int) -> None:
    """Runs of one, short runs and long runs take different paths; the bytes do not
    differ."""
    events = [_event(i + 1, payload) for i, payload in enumerate(payloads)]
    ids = [id_prefix("a"), id_prefix("bb")]
    encoder = EventEncoder()
    general = encode_batches(((e, ids) for e in events), max_events, max_bytes, encoder)
    assert pack_run(events, b"".join(ids), max_events, max_bytes, encoder) == general
    delivered = [d.event.sequence for m in general
                 for d in pb.SubscribeResponse.FromString(m).event_batch.deliveries]
    assert delivered == list(range(1, len(events) + 1))


@pytest.mark.parametrize("length", [1, 2, 8, 50])
def test_a_run_is_split_exactly_at_its_bounds(length: int) -> None:
    events = [_event(i + 1, b"x" * (10 + i % 3)) for i in range(length)]
    ids = id_prefix("sub")
    [whole] = pack_run(events, ids, length, 1 << 30)
    body = len(whole) - 1 - len(varint(len(whole)))  # less the message's own head
    for max_events, max_bytes, messages in [
            (length, body, 1), (length, body - 1, 1 if length == 1 else 2),
            (max(1, length - 1), body, 1 if length == 1 else 2)]:
        packed = pack_run(events, ids, max_events, max_bytes)
        assert packed == encode_batches(((e, [ids]) for e in events), max_events, max_bytes)
        assert len(packed) == messages, (max_events, max_bytes)

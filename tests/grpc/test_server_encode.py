"""The spliced Subscribe wire bytes equal what protobuf itself produces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broadcaster import Event
from broadcaster.grpc._encode import encode_batches, encode_event, id_prefix, varint
from broadcaster.v1 import broadcaster_pb2 as pb


def _event(seq: int, payload: bytes = b"p", labels: dict[str, str] | None = None) -> Event:
    return Event("default", "/tasks/exit", payload, "containerd.events.TaskExit",
                 labels or {}, 1_700_000_000_123_456_789, seq, 0.0, 10)


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_varint_matches_protobuf(value: int) -> None:
    assert pb.Heartbeat(heartbeat_id=value).SerializeToString() == b"\x08" + varint(value)


def test_event_is_encoded_once_and_cached() -> None:
    event = _event(3, labels={"b": "2", "a": "1"})
    data = encode_event(event)
    parsed = pb.Event.FromString(data)
    assert (parsed.sequence, parsed.payload.value, dict(parsed.labels)) == (
        3, b"p", {"a": "1", "b": "2"})
    assert parsed.timestamp.ToNanoseconds() == 1_700_000_000_123_456_789
    assert event.encoded is not None
    event.payload = b"changed"  # the cache is what is sent from now on
    assert encode_event(event) == data


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

"""The hand-written PublishRequest encoder agrees with the protobuf runtime."""

from __future__ import annotations

import pytest

from broadcaster._proto import varint
from broadcaster.client._wire import EventEncoder, encode_batch
from broadcaster.v1 import broadcaster_pb2 as pb


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 70000])
def test_encoded_batch_parses_as_the_same_messages(size: int) -> None:
    encoder = EventEncoder()
    events = [
        encoder.encode("k8s.io", "/tasks/exit", "containerd.events.TaskExit", b"v" * size,
                       {"app": "wéb", "k": ""}, 1_700_000_000_123_456_789),
        encoder.encode("default", "/t", "", b"", None, None),
    ]
    parsed = pb.PublishStreamRequest.FromString(encode_batch(2**40, events))
    expected = pb.PublishStreamRequest(batch_id=2**40)
    first = expected.events.add(namespace="k8s.io", topic="/tasks/exit",
                                labels={"app": "wéb", "k": ""})
    first.payload.type_url = "containerd.events.TaskExit"
    first.payload.value = b"v" * size
    first.timestamp.FromNanoseconds(1_700_000_000_123_456_789)
    second = expected.events.add(namespace="default", topic="/t")
    second.payload.SetInParent()
    assert parsed == expected
    assert varint(size) == pb.PublishStreamRequest(batch_id=size).SerializeToString()[1:] or (
        size == 0
    )


@pytest.mark.parametrize("timestamp_ns", [-1, -62_135_596_800 * 10**9, 253_402_300_799 * 10**9])
def test_timestamps_before_1970_and_up_to_9999_encode_as_protobuf_does(timestamp_ns: int) -> None:
    encoded = EventEncoder().encode("ns", "/t", "", b"", None, timestamp_ns)
    expected = pb.PublishRequest(namespace="ns", topic="/t")
    expected.payload.SetInParent()
    expected.timestamp.FromNanoseconds(timestamp_ns)
    assert pb.PublishRequest.FromString(encoded) == expected
    assert expected.timestamp.ToNanoseconds() == timestamp_ns

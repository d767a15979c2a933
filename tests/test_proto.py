"""The protobuf helpers the server and the client share agree with protobuf itself."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import example, given
from hypothesis import strategies as st

from broadcaster import HubConfig, InvalidArgument, InvalidPolicy, NamespaceConfig, Policy
from broadcaster._proto import (
    MAX_NS,
    MAX_SECONDS,
    MIN_NS,
    MIN_SECONDS,
    check_timestamp,
    int64,
    policy_from_proto,
    policy_to_proto,
    timestamp_body,
    varint,
)
from broadcaster.v1 import broadcaster_pb2 as pb


@given(st.integers(min_value=0, max_value=2**64 - 1))
@example(0)
@example(16383)
@example(16384)
@example(2**64 - 1)
def test_varint_matches_protobuf(value: int) -> None:
    assert pb.Heartbeat(heartbeat_id=value).SerializeToString() == (
        b"\x08" + varint(value) if value else b"")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@example(-1)
@example(MIN_SECONDS)
@example(-(2**63))
def test_int64_matches_protobuf_negative_values_included(value: int) -> None:
    """Negative seconds (before 1970) are ten bytes of two's complement, not a crash or a
    bigger varint."""
    expected = timestamp_pb2.Timestamp(seconds=value).SerializeToString()
    assert (b"\x08" + int64(value) if value else b"") == expected


def test_int64_wraps_like_a_64_bit_cast() -> None:
    assert int64(-1) == int64(2**64 - 1) == b"\xff" * 9 + b"\x01"


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
@example(MIN_NS)
@example(MAX_NS)
@example(-1)
@example(0)
def test_timestamp_body_matches_protobuf(timestamp_ns: int) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromNanoseconds(timestamp_ns)
    assert timestamp_body(timestamp_ns) == expected.SerializeToString()


@pytest.mark.parametrize(("seconds", "nanos", "message"), [
    (MAX_SECONDS + 1, 0, "seconds 253402300800 is outside protobuf's Timestamp range"),
    (MIN_SECONDS - 1, 0, "seconds -62135596801 is outside"),
    (0, -1, "nanos -1 is outside 0 to 999999999"),
    (0, 1_000_000_000, "nanos 1000000000 is outside"),
])
def test_timestamps_outside_protobufs_range_are_refused_naming_the_field(
        seconds: int, nanos: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^at: {message}"):
        check_timestamp(seconds, nanos, "at")


def test_timestamp_range_ends_are_accepted() -> None:
    assert check_timestamp(MAX_SECONDS, 999_999_999, "t") == MAX_NS
    assert check_timestamp(MIN_SECONDS, 0, "t") == MIN_NS


@pytest.mark.parametrize("policy", [
    Policy.drop_newest(10),
    Policy.drop_oldest(20, max_bytes=4096),
    Policy.disconnect(30),
    Policy.block(40, timeout=1.5, fallback="drop_oldest"),
    Policy.retry(50, initial_backoff=0.01, max_backoff=2.0, multiplier=3.0, max_attempts=7,
                 jitter=0.25),
], ids=lambda p: str(p.kind))
def test_policies_survive_the_round_trip(policy: Policy) -> None:
    message = pb.OverflowPolicy.FromString(policy_to_proto(policy).SerializeToString())
    assert policy_from_proto(message, HubConfig(), ["ns"]) == policy


def test_unset_fields_take_the_first_namespaces_default_policy() -> None:
    config = HubConfig(namespaces={"k8s.io": NamespaceConfig(
        default_policy=Policy.drop_oldest(77, max_bytes=9999))})
    got = policy_from_proto(pb.OverflowPolicy(max_events=5), config, ["k8s.io", "other"])
    assert got == Policy.drop_oldest(5, max_bytes=9999)
    assert policy_from_proto(pb.OverflowPolicy(), config, None) == \
        config.default_namespace.default_policy


@pytest.mark.parametrize(("message", "error"), [
    (pb.OverflowPolicy(kind=99), "policy.kind: unknown kind 99"),
    (pb.OverflowPolicy(kind=pb.OverflowPolicy.BLOCK, fallback=42),
     "policy.fallback: unknown kind 42"),
    (pb.OverflowPolicy(kind=pb.OverflowPolicy.BLOCK, block_timeout={"seconds": -1}),
     "policy.block_timeout: must be positive"),
    (pb.OverflowPolicy(kind=pb.OverflowPolicy.RETRY, initial_backoff={}),
     "policy.initial_backoff: must be positive"),
])
def test_malformed_policies_name_the_field(message: pb.OverflowPolicy, error: str) -> None:
    with pytest.raises(InvalidPolicy, match=f"^{error}"):
        policy_from_proto(message, HubConfig(), None)

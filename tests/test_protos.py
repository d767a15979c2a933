"""Generated protobuf code: freshness guard and containerd wire facts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import any_pb2, descriptor_pool, message_factory, timestamp_pb2

from broadcaster.containerd.events import (
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.containerd.services.introspection.v1 import introspection_pb2
from broadcaster.v1 import broadcaster_pb2, broadcaster_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date() -> None:
    """`scripts/gen_protos.py --check` passes, i.e. nobody edited a .proto without `make proto`."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, f"generated code is stale:\n{result.stdout}{result.stderr}"


def _fields(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_full_names_match_containerd() -> None:
    pool = descriptor_pool.Default()
    events_service = pool.FindServiceByName("containerd.services.events.v1.Events")
    assert set(events_service.methods_by_name.keys()) == {"Publish", "Forward", "Subscribe"}
    introspection = pool.FindServiceByName("containerd.services.introspection.v1.Introspection")
    assert set(introspection.methods_by_name.keys()) == {"Server"}
    for name in (
        "containerd.events.TaskExit",
        "containerd.events.TaskOOM",
        "containerd.events.ContainerCreate.Runtime",
        "containerd.events.ContentDelete",
        "containerd.events.NamespaceCreate",
        "containerd.events.SnapshotPrepare",
        "containerd.types.Mount",
        # containerd 1.6 really declares the image events in this package.
        "containerd.services.images.v1.ImageCreate",
    ):
        assert pool.FindMessageTypeByName(name).full_name == name
    # gRPC method paths are derived from the proto package, not the Python module.
    assert events_pb2.DESCRIPTOR.services_by_name["Events"].full_name == (
        "containerd.services.events.v1.Events"
    )
    assert hasattr(events_pb2_grpc, "EventsServicer")
    assert hasattr(broadcaster_pb2_grpc, "BroadcasterServicer")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # Numbers as compiled into containerd/ctr 1.6.20.
        (events_pb2.Envelope, {"timestamp": 1, "namespace": 2, "topic": 3, "event": 4}),
        (events_pb2.PublishRequest, {"topic": 1, "event": 2}),
        (events_pb2.ForwardRequest, {"envelope": 1}),
        (events_pb2.SubscribeRequest, {"filters": 1}),
        (
            task_pb2.TaskExit,
            {"container_id": 1, "id": 2, "pid": 3, "exit_status": 4, "exited_at": 5},
        ),
        (
            task_pb2.TaskDelete,
            {"container_id": 1, "pid": 2, "exit_status": 3, "exited_at": 4, "id": 5},
        ),
        (
            task_pb2.TaskCreate,
            {"container_id": 1, "bundle": 2, "rootfs": 3, "io": 4, "checkpoint": 5, "pid": 6},
        ),
        (task_pb2.TaskExecStarted, {"container_id": 1, "exec_id": 2, "pid": 3}),
        (container_pb2.ContainerCreate, {"id": 1, "image": 2, "runtime": 3}),
        (container_pb2.ContainerUpdate, {"id": 1, "image": 2, "labels": 3, "snapshot_key": 4}),
        (content_pb2.ContentDelete, {"digest": 1}),
        (image_pb2.ImageUpdate, {"name": 1, "labels": 2}),
        (namespace_pb2.NamespaceUpdate, {"name": 1, "labels": 2}),
        (snapshot_pb2.SnapshotCommit, {"key": 1, "name": 2}),
        (introspection_pb2.ServerResponse, {"uuid": 1, "pid": 2, "pidns": 3, "deprecations": 4}),
    ],
)
def test_field_numbers_match_containerd(message: type, expected: dict[str, int]) -> None:
    assert _fields(message) == expected


def test_task_exit_any_round_trip() -> None:
    exit_event = task_pb2.TaskExit(
        container_id="c1",
        id="c1",
        pid=42,
        exit_status=137,
        exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_000),
    )
    packed = any_pb2.Any()
    packed.Pack(exit_event)
    # Python's Any.Pack uses the "type.googleapis.com/" prefix. containerd itself packs
    # with the bare URL "containerd.events.TaskExit", and ctr 1.6 cannot decode the
    # prefixed form (it logs "cannot unmarshal an event from Any" and skips the event).
    assert packed.type_url == "type.googleapis.com/containerd.events.TaskExit"
    bare = any_pb2.Any(type_url="containerd.events.TaskExit", value=exit_event.SerializeToString())
    for wrapped in (packed, bare):
        envelope = events_pb2.Envelope(namespace="default", topic="/tasks/exit", event=wrapped)
        decoded = events_pb2.Envelope.FromString(envelope.SerializeToString())
        assert decoded.event == wrapped
        # Any.Is()/Unpack() of the upb runtime return False for a bare type URL (no "/"),
        # so decode by TypeName(), which works for both forms.
        assert decoded.event.TypeName() == "containerd.events.TaskExit"
        descriptor = descriptor_pool.Default().FindMessageTypeByName(decoded.event.TypeName())
        out = message_factory.GetMessageClass(descriptor).FromString(decoded.event.value)
        assert out == exit_event
    out = task_pb2.TaskExit()
    assert packed.Unpack(out)
    assert out == exit_event


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    return bytes([tag << 3 | 2]) + _varint(len(payload)) + payload


def test_event_batch_splicing_matches_protobuf() -> None:
    """The hand-spliced layout documented in broadcaster.proto is exactly protobuf's."""
    assert _fields(broadcaster_pb2.SubscribeResponse)["event_batch"] == 1
    assert _fields(broadcaster_pb2.EventBatch) == {"deliveries": 1}
    assert _fields(broadcaster_pb2.Delivery) == {"subscription_ids": 1, "event": 2}

    events = [
        broadcaster_pb2.Event(
            namespace="default",
            topic="/tasks/exit",
            payload=any_pb2.Any(type_url="containerd.events.TaskExit", value=b"\n\x02c1" * n),
            labels={"k": "v"},
            timestamp=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=n),
            sequence=n + 1,
        )
        for n in (0, 1, 100)  # the last one has a multi-byte length prefix
    ]
    ids = [["a"], ["a", "b"], ["sub-" + "x" * 200]]
    cached = [event.SerializeToString() for event in events]

    batch = b"".join(
        _len_field(
            1,
            b"".join(_len_field(1, sid.encode()) for sid in sids) + _len_field(2, blob),
        )
        for sids, blob in zip(ids, cached, strict=True)
    )
    spliced = _len_field(1, batch)

    expected = broadcaster_pb2.SubscribeResponse(
        event_batch=broadcaster_pb2.EventBatch(
            deliveries=[
                broadcaster_pb2.Delivery(subscription_ids=sids, event=event)
                for sids, event in zip(ids, events, strict=True)
            ]
        )
    )
    assert broadcaster_pb2.SubscribeResponse.FromString(spliced) == expected
    assert spliced == expected.SerializeToString(deterministic=True)

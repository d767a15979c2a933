"""``event.<field>`` of containerd's event types: exactly the fields, and the value
rendering, of containerd's generated ``*_fieldpath.pb.go`` adaptors (one table per type,
read off containerd's api/events), and types a user registers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from broadcaster._typeurl import CONTAINERD_TYPES
from broadcaster.containerd.events import (
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from broadcaster.containerd.types import mount_pb2
from broadcaster.payloads import CONTAINERD_PAYLOADS, PayloadTypes, message_fields

A = ("", False)  # absent
TS = timestamp_pb2.Timestamp(seconds=1)


def _any(message: Message) -> any_pb2.Any:
    return any_pb2.Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())


# (message, {path: expected}); every path of the generated adaptor is in each table, with
# fields that exist in the proto but that the adaptor leaves unhandled
TABLES: dict[str, list[tuple[Message, dict[tuple[str, ...], tuple[str, bool]]]]] = {
    "ContainerCreate": [
        (container_pb2.ContainerCreate(
            id="c1", image="img", runtime=container_pb2.ContainerCreate.Runtime(
                name="io.containerd.runc.v2", options=_any(task_pb2.TaskExit(id="opt")))),
         {("id",): ("c1", True), ("image",): ("img", True),
          ("runtime",): A, ("runtime", "name"): ("io.containerd.runc.v2", True),
          ("runtime", "options"): A, ("runtime", "options", "id"): ("opt", True),
          ("runtime", "nosuch"): A, ("nosuch",): A, (): A}),
        (container_pb2.ContainerCreate(), {("id",): A, ("image",): A, ("runtime", "name"): A}),
        (container_pb2.ContainerCreate(runtime=container_pb2.ContainerCreate.Runtime(
            options=any_pb2.Any(type_url="unknown.Type", value=b"\x08\x01"))),
         {("runtime", "name"): A, ("runtime", "options", "x"): A}),
    ],
    "ContainerUpdate": [
        (container_pb2.ContainerUpdate(
            id="c1", image="img", labels={"a": "1", "io.k8s.pod": "p", "e": ""},
            snapshot_key="sk"),
         {("id",): ("c1", True), ("image",): ("img", True), ("snapshot_key",): ("sk", True),
          ("labels", "a"): ("1", True), ("labels", "io", "k8s", "pod"): ("p", True),
          ("labels", "io.k8s.pod"): ("p", True), ("labels", "e"): ("", True),
          ("labels", "b"): A, ("labels",): A}),
        (container_pb2.ContainerUpdate(id="c1"), {("labels", "a"): A, ("image",): A}),
    ],
    "ContainerDelete": [
        (container_pb2.ContainerDelete(id="c1"), {("id",): ("c1", True), ("image",): A}),
    ],
    "ContentDelete": [
        (content_pb2.ContentDelete(digest="sha256:1"), {("digest",): ("sha256:1", True)}),
    ],
    "ImageCreate": [
        (image_pb2.ImageCreate(name="docker.io/x", labels={"k": "v"}),
         {("name",): ("docker.io/x", True), ("labels", "k"): ("v", True),
          ("labels", "x"): A}),
    ],
    "ImageUpdate": [
        (image_pb2.ImageUpdate(name="n", labels={"k": "v"}),
         {("name",): ("n", True), ("labels", "k"): ("v", True)}),
        (image_pb2.ImageUpdate(), {("name",): A, ("labels", "k"): A}),
    ],
    "ImageDelete": [
        (image_pb2.ImageDelete(name="n"), {("name",): ("n", True), ("labels", "k"): A}),
    ],
    "NamespaceCreate": [
        (namespace_pb2.NamespaceCreate(name="k8s.io", labels={"k": "v"}),
         {("name",): ("k8s.io", True), ("labels", "k"): ("v", True)}),
    ],
    "NamespaceUpdate": [
        (namespace_pb2.NamespaceUpdate(name="k8s.io", labels={"a.b": "v"}),
         {("name",): ("k8s.io", True), ("labels", "a", "b"): ("v", True)}),
    ],
    "NamespaceDelete": [
        (namespace_pb2.NamespaceDelete(name="k8s.io"), {("name",): ("k8s.io", True)}),
    ],
    "SnapshotPrepare": [
        (snapshot_pb2.SnapshotPrepare(key="k", parent="p"),
         {("key",): ("k", True), ("parent",): ("p", True)}),
    ],
    "SnapshotCommit": [
        (snapshot_pb2.SnapshotCommit(key="k", name="n"),
         {("key",): ("k", True), ("name",): ("n", True)}),
    ],
    "SnapshotRemove": [
        (snapshot_pb2.SnapshotRemove(key="k"), {("key",): ("k", True)}),
    ],
    "TaskCreate": [
        (task_pb2.TaskCreate(
            container_id="c1", bundle="/b", checkpoint="cp", pid=42,
            rootfs=[mount_pb2.Mount(type="overlay")],
            io=task_pb2.TaskIO(stdin="/in", stdout="/out", stderr="", terminal=True)),
         {("container_id",): ("c1", True), ("bundle",): ("/b", True),
          ("checkpoint",): ("cp", True), ("pid",): A, ("rootfs",): A,
          ("rootfs", "type"): A, ("io",): A, ("io", "stdin"): ("/in", True),
          ("io", "stdout"): ("/out", True), ("io", "stderr"): A,
          ("io", "terminal"): ("true", True), ("container_id", "x"): ("c1", True)}),
        (task_pb2.TaskCreate(container_id="c1", io=task_pb2.TaskIO()),
         {("io", "terminal"): ("false", True), ("io", "stdin"): A}),
        (task_pb2.TaskCreate(container_id="c1"), {("io", "terminal"): A}),
    ],
    "TaskStart": [
        (task_pb2.TaskStart(container_id="c1", pid=7),
         {("container_id",): ("c1", True), ("pid",): A}),
    ],
    "TaskDelete": [
        (task_pb2.TaskDelete(container_id="c1", id="e1", pid=7, exit_status=1, exited_at=TS),
         {("container_id",): ("c1", True), ("id",): ("e1", True), ("pid",): A,
          ("exit_status",): A, ("exited_at",): A, ("exited_at", "seconds"): A}),
    ],
    "TaskIO": [
        (task_pb2.TaskIO(stdin="a", stdout="b", stderr="c"),
         {("stdin",): ("a", True), ("stdout",): ("b", True), ("stderr",): ("c", True),
          ("terminal",): ("false", True)}),
    ],
    "TaskExit": [
        (task_pb2.TaskExit(container_id="c1", id="c1", pid=7, exit_status=137, exited_at=TS),
         {("container_id",): ("c1", True), ("id",): ("c1", True), ("pid",): A,
          ("exit_status",): A, ("exited_at",): A}),
        (task_pb2.TaskExit(), {("container_id",): A, ("id",): A}),
    ],
    "TaskOOM": [
        (task_pb2.TaskOOM(container_id="c1"), {("container_id",): ("c1", True)}),
    ],
    "TaskExecAdded": [
        (task_pb2.TaskExecAdded(container_id="c1", exec_id="x1"),
         {("container_id",): ("c1", True), ("exec_id",): ("x1", True)}),
    ],
    "TaskExecStarted": [
        (task_pb2.TaskExecStarted(container_id="c1", exec_id="x1", pid=9),
         {("container_id",): ("c1", True), ("exec_id",): ("x1", True), ("pid",): A}),
    ],
    "TaskPaused": [
        (task_pb2.TaskPaused(container_id="c1"), {("container_id",): ("c1", True)}),
    ],
    "TaskResumed": [
        (task_pb2.TaskResumed(container_id="c1"), {("container_id",): ("c1", True)}),
    ],
    "TaskCheckpointed": [
        (task_pb2.TaskCheckpointed(container_id="c1", checkpoint="cp"),
         {("container_id",): ("c1", True), ("checkpoint",): ("cp", True)}),
    ],
}


def test_every_containerd_event_type_has_a_table() -> None:
    names = {n.rpartition(".")[2] for n in CONTAINERD_TYPES.names()} - {"Mount"}
    assert names == set(TABLES)


@pytest.mark.parametrize(
    ("message", "expected"),
    [case for cases in TABLES.values() for case in cases],
    ids=[f"{name}-{i}" for name, cases in TABLES.items() for i in range(len(cases))],
)
@pytest.mark.parametrize("prefix", ["", "type.googleapis.com/"])
def test_containerd_event_fields(message: Message, expected: dict[tuple[str, ...],
                                 tuple[str, bool]], prefix: str) -> None:
    fields = CONTAINERD_PAYLOADS(prefix + message.DESCRIPTOR.full_name,
                                 message.SerializeToString())
    assert fields is not None
    assert {path: fields(path) for path in expected} == expected


def test_unknown_types_and_bad_payloads_have_no_fields() -> None:
    assert CONTAINERD_PAYLOADS("example.Unknown", b"") is None
    assert CONTAINERD_PAYLOADS("containerd.events.TaskExit", b"\xff\xff") is None
    assert CONTAINERD_PAYLOADS("application/json", b'{"a": "b"}') is not None
    assert PayloadTypes(json=False)("application/json", b'{"a": "b"}') is None


def test_a_registered_type_gets_the_generator_rules() -> None:
    """Any message class: strings (proto3 optional: present when set), bools, labels
    maps, nested messages and Any fields; the rest is unhandled."""
    struct = timestamp_pb2.Timestamp  # a message with only numbers: nothing handled
    types = PayloadTypes().register(struct, "example.com/clock")
    fields = types("example.com/clock", struct(seconds=5).SerializeToString())
    assert fields is not None and fields(("seconds",)) == A
    assert types.lookup("google.protobuf.Timestamp") is struct
    assert types.names() == ["google.protobuf.Timestamp"]
    mixed = CONTAINERD_PAYLOADS.register(task_pb2.TaskExit, "example.com/exit")
    exit_fields = mixed("example.com/exit", task_pb2.TaskExit(id="e").SerializeToString())
    assert exit_fields is not None and exit_fields(("id",)) == ("e", True)
    with pytest.raises(TypeError):
        PayloadTypes().register(dict)  # type: ignore[arg-type]


def test_message_fields_of_a_decoded_message() -> None:
    lookup = message_fields(task_pb2.TaskOOM(container_id="c1"))
    paths: Sequence[tuple[str, ...]] = [("container_id",), ("x",), ()]
    assert [lookup(p) for p in paths] == [("c1", True), A, A]

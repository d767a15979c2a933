"""Type URLs, ctr-style decoding and its inverse (broadcaster/_typeurl.py).

Byte-for-byte agreement with the real ``ctr`` is checked in
tests/interop/test_ctr_events.py; these pin down the rules one by one.
"""

from __future__ import annotations

import json

import pytest
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster import InvalidArgument
from broadcaster._typeurl import (
    CONTAINERD_TYPES,
    TypeRegistry,
    containerd_type_url,
    decode_event,
    encode_json,
    format_ctr_line,
    go_json,
    go_time_string,
    type_name,
)
from broadcaster.containerd.events import container_pb2, task_pb2
from broadcaster.containerd.types import mount_pb2

TASK_EXIT = "containerd.events.TaskExit"


def ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


# -- type URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "name", "for_containerd"),
    [
        (TASK_EXIT, TASK_EXIT, TASK_EXIT),
        ("type.googleapis.com/" + TASK_EXIT, TASK_EXIT, TASK_EXIT),
        ("type.googleapis.com/google.protobuf.Empty", "google.protobuf.Empty",
         "type.googleapis.com/google.protobuf.Empty"),
        ("example.com/containerd.events.TaskExit", TASK_EXIT,
         "example.com/containerd.events.TaskExit"),
        ("", "", ""),
    ],
)
def test_type_url_forms(url: str, name: str, for_containerd: str) -> None:
    assert type_name(url) == name
    assert containerd_type_url(url) == for_containerd


def test_registry_knows_containerd_events_by_either_url() -> None:
    assert CONTAINERD_TYPES.lookup(TASK_EXIT) is task_pb2.TaskExit
    assert CONTAINERD_TYPES.lookup("type.googleapis.com/" + TASK_EXIT) is task_pb2.TaskExit
    assert CONTAINERD_TYPES.lookup("containerd.events.Nope") is None
    names = CONTAINERD_TYPES.names()
    assert {"containerd.events.ContainerCreate", "containerd.services.images.v1.ImageCreate",
            "containerd.events.SnapshotCommit", "containerd.types.Mount"} <= set(names)
    assert names == sorted(names)


def test_a_registry_of_its_own() -> None:
    registry = TypeRegistry([task_pb2.TaskOOM])
    assert registry.names() == ["containerd.events.TaskOOM"]
    payload = task_pb2.TaskExit(pid=1).SerializeToString()
    assert decode_event(TASK_EXIT, payload, registry) == {
        "type_url": TASK_EXIT, "payload_base64": "GAE="}


# -- decoding ------------------------------------------------------------------------------


def test_task_exit_decodes_like_ctr() -> None:
    msg = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=137,
                            exited_at=ts(1_700_000_001))
    decoded = decode_event(TASK_EXIT, msg.SerializeToString())
    assert list(decoded.items()) == [
        ("container_id", "c1"), ("id", "c1"), ("pid", 42), ("exit_status", 137),
        ("exited_at", "2023-11-14T22:13:21Z"),
    ]


@pytest.mark.parametrize(
    ("exited_at", "text"),
    [
        (None, "0001-01-01T00:00:00Z"),  # unset: Go's zero time
        (ts(0), "1970-01-01T00:00:00Z"),  # set to the Unix epoch
        (ts(-1, 999_999_999), "1969-12-31T23:59:59.999999999Z"),
        (ts(1, 500_000_000), "1970-01-01T00:00:01.5Z"),
        (ts(1, 1000), "1970-01-01T00:00:01.000001Z"),
        (ts(-62_135_596_800), "0001-01-01T00:00:00Z"),
        (ts(253_402_300_799, 999_999_999), "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_timestamps_are_rfc3339_and_always_present(
    exited_at: timestamp_pb2.Timestamp | None, text: str
) -> None:
    msg = task_pb2.TaskExit()
    if exited_at is not None:
        msg.exited_at.CopyFrom(exited_at)
    assert decode_event(TASK_EXIT, msg.SerializeToString()) == {"exited_at": text}


@pytest.mark.parametrize("bad", [ts(253_402_300_800), ts(-62_135_596_801), ts(0, -1)])
def test_a_timestamp_go_rejects_is_reported(bad: timestamp_pb2.Timestamp) -> None:
    payload = task_pb2.TaskExit(exited_at=bad).SerializeToString()
    decoded = decode_event(TASK_EXIT, payload)
    assert decoded["type_url"] == TASK_EXIT
    assert "out of range" in decoded["error"]


def test_nested_repeated_map_and_any_fields() -> None:
    create = task_pb2.TaskCreate(
        container_id="c", rootfs=[mount_pb2.Mount(type="overlay", options=["a", "b"]),
                                  mount_pb2.Mount()],
        io=task_pb2.TaskIO(terminal=True), pid=0)
    assert decode_event("containerd.events.TaskCreate", create.SerializeToString()) == {
        "container_id": "c",
        "rootfs": [{"type": "overlay", "options": ["a", "b"]}, {}],
        "io": {"terminal": True},
    }
    update = container_pb2.ContainerUpdate(id="x", labels={"b": "2", "a": "1", "": ""})
    decoded = decode_event("containerd.events.ContainerUpdate", update.SerializeToString())
    assert list(decoded["labels"]) == ["", "a", "b"]  # Go sorts map keys
    runtime = container_pb2.ContainerCreate.Runtime(
        name="r", options=any_pb2.Any(type_url="t", value=b"\x00\x01"))
    created = container_pb2.ContainerCreate(id="c", runtime=runtime)
    assert decode_event("containerd.events.ContainerCreate", created.SerializeToString()) == {
        "id": "c", "runtime": {"name": "r", "options": {"type_url": "t", "value": "AAE="}}}


def test_empty_message_decodes_to_empty_object() -> None:
    assert decode_event("containerd.events.TaskOOM", b"") == {}


def test_unknown_and_corrupt_payloads() -> None:
    assert decode_event("example.com/X", b"\x01\x02") == {
        "type_url": "example.com/X", "payload_base64": "AQI="}
    assert decode_event("", b"\x01") == {"type_url": "", "payload_base64": "AQ=="}
    corrupt = decode_event("containerd.events.TaskOOM", b"\x0a\x05ab")
    assert corrupt["payload_base64"] == "CgVhYg=="
    assert "containerd.events.TaskOOM" in corrupt["error"]


# -- Go's encoding/json and time formatting ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", '"plain"'),
        ('q"b\\s/', '"q\\"b\\\\s/"'),
        ("<a&b>", '"\\u003ca\\u0026b\\u003e"'),
        ("\n\r\t", '"\\n\\r\\t"'),
        ("\x00\x08\x0c\x1f\x7f", '"\\u0000\\u0008\\u000c\\u001f\x7f"'),
        ("é日😀 \u2028\u2029", '"é日😀 \\u2028\\u2029"'),
        ({"b": 1, "a": [True, False, None]}, '{"b":1,"a":[true,false,null]}'),
        ([], "[]"),
        ({}, "{}"),
        (-5, "-5"),
    ],
)
def test_go_json(value: object, text: str) -> None:
    assert go_json(value) == text


def test_go_json_rejects_what_it_cannot_encode() -> None:
    with pytest.raises(TypeError):
        go_json(1.5)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
))
@settings(max_examples=100, deadline=None)
def test_go_json_is_valid_json(value: object) -> None:
    assert json.loads(go_json(value)) == value


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01 00:00:00 +0000 UTC"),
        (-1, "1969-12-31 23:59:59.999999999 +0000 UTC"),
        (1_700_000_000_123_456_789, "2023-11-14 22:13:20.123456789 +0000 UTC"),
        (1_700_000_000_500_000_000, "2023-11-14 22:13:20.5 +0000 UTC"),
        (-62_135_596_800 * 10**9, "0001-01-01 00:00:00 +0000 UTC"),
    ],
)
def test_go_time_string(ns: int, text: str) -> None:
    assert go_time_string(ns) == text


def test_go_time_string_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        go_time_string(253_402_300_800 * 10**9)


def test_format_ctr_line() -> None:
    payload = task_pb2.TaskOOM(container_id="c2").SerializeToString()
    assert format_ctr_line(1_700_000_000 * 10**9, "ns1", "/tasks/oom",
                           "containerd.events.TaskOOM", payload) == (
        '2023-11-14 22:13:20 +0000 UTC ns1 /tasks/oom {"container_id":"c2"}')
    assert format_ctr_line(1_700_000_000 * 10**9, "", "/empty/event", "", b"") == (
        "2023-11-14 22:13:20 +0000 UTC  /empty/event ")


# -- encoding ----------------------------------------------------------------------------------


def test_encode_json_builds_the_message_with_a_bare_type_url() -> None:
    url, payload = encode_json("type.googleapis.com/" + TASK_EXIT, {
        "container_id": "c1", "exitStatus": 137, "pid": 42, "id": None,
        "exited_at": "2023-11-14T23:13:21.5+01:00"})
    assert url == TASK_EXIT
    assert task_pb2.TaskExit.FromString(payload) == task_pb2.TaskExit(
        container_id="c1", pid=42, exit_status=137, exited_at=ts(1_700_000_001, 500_000_000))


def test_encode_json_nested() -> None:
    data = {"container_id": "c", "rootfs": [{"type": "overlay", "options": ["a"]}],
            "io": {"terminal": True}}
    url, payload = encode_json("containerd.events.TaskCreate", data)
    assert decode_event(url, payload) == data
    data = {"id": "c", "runtime": {"name": "r", "options": {"type_url": "t", "value": "AAE="}}}
    url, payload = encode_json("containerd.events.ContainerCreate", data)
    assert container_pb2.ContainerCreate.FromString(payload).runtime.options.value == b"\0\1"
    assert decode_event(url, payload) == data


@pytest.mark.parametrize(
    ("type_", "data", "field", "message"),
    [
        ("containerd.events.Nope", {}, "type", "unknown type 'containerd.events.Nope'"),
        ("", {}, "type", "unknown type"),
        (TASK_EXIT, [], "json", "must be a JSON object, not an array"),
        (TASK_EXIT, {"bogus": 1}, "json.bogus", "unknown field of containerd.events.TaskExit"),
        (TASK_EXIT, {"pid": "1"}, "json.pid", "must be an integer, not a string"),
        (TASK_EXIT, {"pid": True}, "json.pid", "must be an integer, not a boolean"),
        (TASK_EXIT, {"pid": -1}, "json.pid", "-1 is out of range"),
        (TASK_EXIT, {"pid": 2**32}, "json.pid", "out of range"),
        (TASK_EXIT, {"id": 5}, "json.id", "must be a string, not a number"),
        (TASK_EXIT, {"exited_at": "yesterday"}, "json.exited_at", "bad RFC 3339 time"),
        (TASK_EXIT, {"exited_at": 5}, "json.exited_at", "must be an RFC 3339 string"),
        ("containerd.events.TaskCreate", {"rootfs": [{"options": ["a", 1]}]},
         "json.rootfs[0].options[1]", "must be a string"),
        ("containerd.events.TaskCreate", {"rootfs": {}}, "json.rootfs", "must be a JSON array"),
        ("containerd.events.TaskCreate", {"io": {"terminal": "yes"}}, "json.io.terminal",
         "must be true or false"),
        ("containerd.events.ContainerUpdate", {"labels": {"a": 1}}, "json.labels.a",
         "must be a string"),
        ("containerd.events.ContainerUpdate", {"labels": []}, "json.labels",
         "must be a JSON object"),
        ("containerd.events.ContainerCreate", {"runtime": {"options": {"value": "!!"}}},
         "json.runtime.options.value", "bad base64"),
    ],
)
def test_encode_json_errors_name_the_field(
    type_: str, data: object, field: str, message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        encode_json(type_, data)  # type: ignore[arg-type]
    assert info.value.field == field
    assert message in info.value.message


_text = st.text(max_size=20)
_stamp = st.builds(ts, st.integers(-62_135_596_800, 253_402_300_799),
                   st.integers(0, 999_999_999))


@given(
    st.builds(
        task_pb2.TaskExit, container_id=_text, id=_text, pid=st.integers(0, 2**32 - 1),
        exit_status=st.integers(0, 2**32 - 1), exited_at=_stamp,
    )
    | st.builds(
        task_pb2.TaskCreate, container_id=_text, bundle=_text,
        rootfs=st.lists(st.builds(mount_pb2.Mount, type=_text, options=st.lists(_text)),
                        max_size=3),
        io=st.builds(task_pb2.TaskIO, stdin=_text, terminal=st.booleans()),
    )
    | st.builds(container_pb2.ContainerUpdate, id=_text,
                labels=st.dictionaries(_text, _text, max_size=4))
)
@settings(max_examples=200, deadline=None)
def test_decode_then_encode_gives_back_the_event(msg: Message) -> None:
    name = msg.DESCRIPTOR.full_name
    payload = msg.SerializeToString()
    decoded = decode_event(name, payload)
    url, again = encode_json(name, json.loads(go_json(decoded)))
    assert url == name
    assert type(msg).FromString(again) == msg

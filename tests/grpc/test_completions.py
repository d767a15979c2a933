"""grpc.aio's finished operations reach the loop as fast as they finish: the server
replaces grpc's completion-queue reader (one wake-up byte read per turn) with one that
reads every byte waiting (broadcaster/grpc/_completions.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import anyio
import grpc
import pytest

from broadcaster.grpc._completions import _find_queue, _reader, read_completions_promptly

from .._ticker import Ticker
from ._helpers import add, publish, stub
from .conftest import MakeServer

pytestmark = pytest.mark.anyio


class FakeQueue:
    """grpc's side of the socketpair: an operation is queued, then its byte written; the
    handler reads one byte and takes every queued operation (as grpc.aio 1.85 does)."""

    def __init__(self) -> None:
        self.read, self.write = socket.socketpair()
        self.read.setblocking(False)
        self.queued: list[int] = []
        self.taken: list[int] = []
        self.calls = 0
        self.fail_after: int | None = None

    def push(self, count: int) -> None:
        for i in range(count):
            self.queued.append(i)
            self.write.send(b"1")

    def handle_events(self, loop: object) -> None:
        self.calls += 1
        self.read.recv(1)
        while self.queued:
            if self.fail_after is not None and len(self.taken) == self.fail_after:
                self.fail_after = None
                raise RuntimeError("handing an event over failed")
            self.taken.append(self.queued.pop(0))

    def waiting(self) -> int:
        try:
            return len(self.read.recv(1 << 16, socket.MSG_PEEK))
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.read.close()
        self.write.close()


@pytest.fixture
def fake() -> Iterator[FakeQueue]:
    queue = FakeQueue()
    yield queue
    queue.close()


def reader_of(fake: FakeQueue) -> Callable[[], None]:
    loop = cast(asyncio.AbstractEventLoop, object())  # only handed to the handler
    return _reader(loop, fake.read, fake.write, fake.handle_events)


def test_one_call_reads_every_waiting_byte_and_takes_the_whole_queue(
        fake: FakeQueue) -> None:
    fake.push(250)
    reader_of(fake)()
    assert fake.calls == 1 and len(fake.taken) == 250 and fake.waiting() == 0


def test_grpcs_own_handler_leaves_a_byte_per_operation_but_one(fake: FakeQueue) -> None:
    """What the reader mends: grpc's handler takes the whole queue and one byte, so a
    turn that took 250 operations leaves 249 bytes, and the next 249 turns take one
    operation each once the poller thread is blocked on a full socket."""
    fake.push(250)
    fake.handle_events(None)
    assert len(fake.taken) == 250 and fake.waiting() == 249


def test_the_socket_fills_after_a_few_hundred_wakeups(fake: FakeQueue) -> None:
    """The poller thread writes with a blocking socket: past this many unread bytes it
    waits for the loop."""
    fake.write.setblocking(False)
    written = 0
    with contextlib.suppress(BlockingIOError):
        while written < 100_000:
            fake.write.send(b"1")
            written += 1
    assert 100 < written < 100_000
    reader_of(fake)()
    assert fake.waiting() == 0  # one call makes room for all of them again


def test_a_wakeup_without_bytes_calls_nothing(fake: FakeQueue) -> None:
    reader_of(fake)()  # another loop's reader read it first
    assert fake.calls == 0


def test_a_failing_handler_leaves_a_byte_for_the_rest_of_the_queue(
        fake: FakeQueue) -> None:
    fake.push(10)
    fake.fail_after = 4
    read = reader_of(fake)
    with pytest.raises(RuntimeError, match="handing"):
        read()
    assert len(fake.taken) == 4 and fake.waiting() == 1  # the loop calls the reader again
    read()
    assert len(fake.taken) == 10 and fake.waiting() == 0


async def test_this_grpcio_is_recognised(make_server: MakeServer) -> None:
    """Fails when a grpcio upgrade changes the internals the reader relies on (then
    check whether grpc still reads one byte per turn, and mend or drop the reader)."""
    await make_server()
    loop = asyncio.get_running_loop()
    found = _find_queue(loop)
    assert found is not None
    read, write, handle_events = found
    assert not read.getblocking() and write.getblocking() and callable(handle_events)
    reader = loop._selector.get_key(read).data[0]  # type: ignore[attr-defined]
    assert reader._callback.__qualname__.endswith("read_completions")


class BusyTicker(Ticker):
    """Counts turns that each take a millisecond: a loop busy with other work, as a
    loaded server's is (the condition under which operations finish faster than the
    loop reads them). The sleep stands in for that work; it waits for nothing."""

    async def run(self) -> None:
        while self.running:
            self.turn += 1
            time.sleep(0.001)  # noqa: ASYNC251 (blocking on purpose: a busy turn)
            await anyio.lowlevel.checkpoint()


async def _turns_to_fan_out(channels: list[grpc.aio.Channel], streams: int) -> int:
    """Turns of the loop from one Publish to its event read by all *streams* (each on
    a Subscribe stream of its own, 50 per connection)."""
    calls = []
    for i in range(streams):
        call = stub(channels[i // 50]).Subscribe()
        await call.write(add("s", ("fanout",)))
        calls.append(call)
    for call in calls:
        with anyio.fail_after(10):
            assert (await call.read()).WhichOneof("kind") == "add_result"
    received = 0

    async def read(call: Any) -> None:
        nonlocal received
        while (await call.read()).WhichOneof("kind") != "event_batch":
            pass
        received += 1

    ticker = BusyTicker()
    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(read, call)
        tg.start_soon(ticker.run)
        await anyio.lowlevel.checkpoint()
        start = ticker.turn
        await publish(channels[-1], "fanout", "/t")
        with anyio.fail_after(30):
            while received < streams:
                await anyio.lowlevel.checkpoint()
        ticker.running = False
    for call in calls:
        call.cancel()
    return ticker.turn - start


@pytest.mark.memory_only("the completion queue is the gRPC edge's, whatever the log")
async def test_a_fan_out_reaches_the_loop_in_few_turns(make_server: MakeServer) -> None:
    """300 streams' writes and reads finish together while the loop is busy: with the
    server's reader they reach the loop within a few dozen turns; with grpc's own
    (restored here for the comparison) about one per turn once the socket is full."""
    server = await make_server()
    loop = asyncio.get_running_loop()
    found = _find_queue(loop)
    assert found is not None
    read, _, handle_events = found
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per channel
    channels = [grpc.aio.insecure_channel(server.addresses[0], options=options)
                for _ in range(7)]
    try:
        prompt = await _turns_to_fan_out(channels, 300)
        loop.add_reader(read, functools.partial(handle_events, loop))  # grpc's reader
        try:
            one_per_turn = await _turns_to_fan_out(channels, 300)
        finally:
            assert read_completions_promptly(loop)
    finally:
        for channel in channels:
            await channel.close()
    assert prompt < 120
    assert one_per_turn > 3 * prompt

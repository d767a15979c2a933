"""The tests' asyncio loop (``tests/_loops.py``) against the case it exists for: a
grpc.aio call still in flight when its loop closed, finishing while another loop runs
grpc.aio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from broadcaster.grpc._completions import read_completions_promptly

from ._loops import TestLoop

WAIT = 10.0


@pytest.fixture
def held_server() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """A server (threads, not grpc.aio) whose method ``/t/Held`` answers once released,
    and whose ``/t/Echo`` answers at once."""
    started, release = threading.Event(), threading.Event()

    def held(request: bytes, context: grpc.ServicerContext) -> bytes:
        started.set()
        release.wait(WAIT)
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t", {
        "Held": grpc.unary_unary_rpc_method_handler(held),
        "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", started, release
    finally:
        release.set()
        server.stop(None)


def _stray_then_call(address: str, started: threading.Event, release: threading.Event,
                     new_loop: Callable[[], asyncio.AbstractEventLoop],
                     servers_reader: bool = False) -> list[Any]:
    """Leave a call in flight on a loop that closes, then make one on *new_loop* (with
    the server's completion-queue reader if *servers_reader*) while the first one
    finishes; what *new_loop* reported as errors."""
    first = asyncio.new_event_loop()
    left: list[object] = []

    async def leave_a_call() -> None:
        channel = grpc.aio.insecure_channel(address)
        left.append(channel.unary_unary("/t/Held")(b"first"))  # started at once
        await first.run_in_executor(None, started.wait, WAIT)

    first.run_until_complete(leave_a_call())
    first.close()

    reported: list[Any] = []
    second = new_loop()
    second.set_exception_handler(lambda loop, context: reported.append(context))

    async def call() -> bytes:
        async with grpc.aio.insecure_channel(address) as channel:
            if servers_reader:
                await channel.unary_unary("/t/Echo")(b"bind this loop")
                assert read_completions_promptly(asyncio.get_running_loop())
            release.set()
            answer: bytes = await asyncio.wait_for(
                channel.unary_unary("/t/Echo")(b"second"), WAIT)
        return answer

    try:
        assert second.run_until_complete(call()) == b"second"
    finally:
        second.close()
    return reported


def test_a_call_finishing_after_its_loop_closed_is_reported_by_a_plain_loop(
        held_server: tuple[str, threading.Event, threading.Event]) -> None:
    """Why the tests need their own loop: the stray completion fails in the next loop."""
    reported = _stray_then_call(*held_server, asyncio.new_event_loop)
    assert [str(context.get("exception")) for context in reported] == [
        "Event loop is closed"]


def test_the_tests_loop_lets_it_pass_and_still_reports_other_errors(
        held_server: tuple[str, threading.Event, threading.Event]) -> None:
    assert _stray_then_call(*held_server, TestLoop) == []
    loop = TestLoop()
    reported: list[Any] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        loop.call_soon(lambda: 1 / 0)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert [type(context["exception"]) for context in reported] == [ZeroDivisionError]


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, TestLoop])
def test_with_the_servers_reader_too(
        held_server: tuple[str, threading.Event, threading.Event],
        new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """The server reads grpc's queue with a reader of its own: the same error, the same
    remedy."""
    reported = _stray_then_call(*held_server, new_loop, servers_reader=True)
    assert [str(context.get("exception")) for context in reported] == (
        [] if new_loop is TestLoop else ["Event loop is closed"])

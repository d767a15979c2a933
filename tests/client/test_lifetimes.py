"""The client's task groups: what runs where, and what a block's exit leaves behind."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from broadcaster.client import Client, Event, PublishError

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]


def _client_tasks() -> list[str]:
    return sorted(n for t in asyncio.all_tasks()
                  if (n := t.get_name()).startswith("broadcaster-"))


async def test_blocks_leave_no_task_behind(server: Any) -> None:
    async with Client(server.addresses[0]) as client:
        async with client.publisher("ns") as pub:
            assert _client_tasks() == ["broadcaster-publisher"]
            async with client.subscribe("ns") as shared, \
                    client.subscribe("ns", own_stream=True) as own:
                assert _client_tasks() == ["broadcaster-publisher", "broadcaster-subscribe",
                                           "broadcaster-subscribe"]
                await pub.publish("/e", b"1")
                with anyio.fail_after(10):
                    assert isinstance(await shared.__anext__(), Event)
                    assert isinstance(await own.__anext__(), Event)
            # the own stream ended with its subscription; the shared one stays
            assert _client_tasks() == ["broadcaster-publisher", "broadcaster-subscribe"]
        assert _client_tasks() == ["broadcaster-subscribe"]
    assert _client_tasks() == []


async def test_a_blocks_own_exception_propagates_as_it_is(server: Any) -> None:
    """The task groups are the client's business: an error in the user's block is not
    wrapped in an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with Client(server.addresses[0]) as client, client.subscribe("ns"):
            raise KeyError("mine")
    with pytest.raises(KeyError):
        async with Client(server.addresses[0]) as client, client.publisher("ns") as pub:
            future = await pub.submit("/e", b"")
            raise KeyError("mine")
    assert isinstance(future.exception(), PublishError)  # unsent when the block failed
    assert _client_tasks() == []


async def test_cancelling_a_block_ends_its_tasks(server: Any) -> None:
    scope = anyio.CancelScope()

    async def consume() -> None:
        with scope:
            async with Client(server.addresses[0]) as client, client.subscribe("ns") as sub:
                async for _ in sub:  # nothing is published: waits until cancelled
                    pass

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            while not _client_tasks():
                await anyio.sleep(0.01)
            await anyio.wait_all_tasks_blocked()  # the consumer waits in receive()
            scope.cancel()
    assert scope.cancelled_caught
    assert _client_tasks() == []


async def test_leaving_batches_early_leaves_no_scope_open(server: Any) -> None:
    """``batches()`` is an async generator: it must hold no task group or cancel scope
    across its yield, or abandoning it would corrupt the consumer's scopes."""
    async with Client(server.addresses[0]) as client, client.subscribe("ns") as sub:
        for i in range(3):
            await client.publish("ns", "/e", str(i).encode())
        seen: list[bytes] = []
        with anyio.fail_after(10):
            async for batch in sub.batches():
                seen += [item.payload for item in batch if isinstance(item, Event)]
                break  # abandon the generator, unfinished
            with anyio.CancelScope():  # scopes still nest and exit normally
                while len(seen) < 3:
                    seen += [item.payload for item in [await sub.__anext__()]
                             if isinstance(item, Event)]
    assert seen == [b"0", b"1", b"2"]

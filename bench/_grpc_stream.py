"""A raw ``Subscribe`` stream for the churn and idle workers (generated stubs, no client
library): requests go through a queue, responses are read by one task that answers
every Heartbeat with an Ack and hands control messages (AddResult, Removed, ...) over."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from broadcaster.v1 import broadcaster_pb2 as pb

__all__ = ["StreamError", "SubscribeStream"]


class StreamError(Exception):
    """The stream ended, or answered something other than what was expected."""


class SubscribeStream:
    """One ``Subscribe`` call.

    :param stub: a ``BroadcasterStub`` on an open channel
    :param namespace: namespace every :meth:`add` subscribes to
    :param step_timeout: seconds each awaited answer may take (then TimeoutError)
    """

    def __init__(self, stub: Any, namespace: str, step_timeout: float = 10.0) -> None:
        self.namespace = namespace
        self.step_timeout = step_timeout
        self._requests: asyncio.Queue[pb.SubscribeRequest | None] = asyncio.Queue()
        self._control: asyncio.Queue[pb.SubscribeResponse | None] = asyncio.Queue()
        self.events = 0
        self.heartbeats = 0
        self.ended = 0
        self.dropped = 0
        self._event_seen = asyncio.Event()
        self.call = stub.Subscribe(self._pending())
        self._reader = asyncio.create_task(self._read())

    async def _pending(self) -> Any:
        while (item := await self._requests.get()) is not None:
            yield item

    async def _read(self) -> None:
        try:
            async for msg in self.call:
                kind = msg.WhichOneof("kind")
                if kind == "heartbeat":
                    self.heartbeats += 1
                    self._requests.put_nowait(pb.SubscribeRequest(
                        ack=pb.SubscribeRequest.Ack(heartbeat_id=msg.heartbeat.heartbeat_id)))
                elif kind == "event_batch":
                    self.events += sum(len(d.subscription_ids) for d in msg.event_batch.deliveries)
                    self._event_seen.set()
                elif kind == "drop_notice":
                    self.dropped += msg.drop_notice.count
                elif kind == "subscription_ended":
                    self.ended += 1
                elif kind in ("add_result", "removed"):
                    self._control.put_nowait(msg)
        except asyncio.CancelledError:
            raise
        except Exception:  # cancelled call or broken connection: the caller sees the end
            pass
        finally:
            self._control.put_nowait(None)

    async def _expect(self, kind: str) -> pb.SubscribeResponse:
        msg = await asyncio.wait_for(self._control.get(), self.step_timeout)
        if msg is None:
            self._control.put_nowait(None)  # keep the end visible to later calls
            raise StreamError(f"stream ended while waiting for {kind}")
        if msg.WhichOneof("kind") != kind:
            raise StreamError(f"expected {kind}, got {msg.WhichOneof('kind')}")
        return msg

    def send_add(self, subscription_id: str) -> None:
        """Queue an Add of *subscription_id* (default policy) without waiting."""
        self._requests.put_nowait(pb.SubscribeRequest(add=pb.SubscribeRequest.Add(
            subscription_id=subscription_id, namespaces=[self.namespace])))

    async def add(self, subscription_ids: list[str]) -> None:
        """Add every id; return once each got a successful AddResult.

        :raises StreamError: if one is rejected or the stream ends
        """
        for sid in subscription_ids:
            self.send_add(sid)
        for _ in subscription_ids:
            msg = await self._expect("add_result")
            if not msg.add_result.ok:
                raise StreamError(f"add rejected: {msg.add_result.error.message}")

    async def remove(self, subscription_id: str) -> None:
        """Remove *subscription_id*; return once the server confirmed it.

        :raises StreamError: if the stream ends first
        """
        self._requests.put_nowait(pb.SubscribeRequest(
            remove=pb.SubscribeRequest.Remove(subscription_id=subscription_id)))
        await self._expect("removed")

    async def wait_event(self, seen: int) -> None:
        """Return once more than *seen* deliveries have come on this stream."""
        async with asyncio.timeout(self.step_timeout):
            while self.events <= seen:
                self._event_seen.clear()
                await self._event_seen.wait()

    async def half_close(self) -> None:
        """End the request side and wait for the server to end the stream (it does once no
        subscription is left)."""
        self._requests.put_nowait(None)
        await asyncio.wait_for(asyncio.shield(self._reader), self.step_timeout)

    async def cancel(self) -> None:
        """Abort the call (RST_STREAM): the server must clean up on its own."""
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

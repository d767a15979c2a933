"""One ``broadcaster.v1.Broadcaster/Subscribe`` stream: many subscriptions, one writer.

Shape of a stream::

    reader (the RPC's task)   Add / Remove / Ack  -> opens or closes hub subscriptions
    one task for the rest     receive_batch_nowait() of the subscriptions the hub woke
                              (each parked with its entry as waker)  -> the Drain
                              Drain.take(): EventBatch messages -> context.write(bytes)

Woken by the hub, the task reads every woken subscription without yielding and sends
what that pass gave as one spliced ``EventBatch``, each event once with the ids of every
subscription it matched (the batching is :class:`Drain`'s, a plain class tested without
a server), then reads again what the hub woke meanwhile. So an idle stream writes an
event as soon as it is published, and the events that arrive while a write is in flight
go out together in the next message: batches grow with the load, not with a fixed
delay (``batch_linger`` can add a least time between two writes). One task, not a
reader and a writer handing messages over, because a wake-up and a write are most of
what a stream costs the server.

The stream reads the hub only through its public API (``prepare``,
``receive_batch_nowait``, ``park_waker``, ``policy_bounds``, ``latest_sequences``,
``epochs``, ``ack``); a rejected Add is answered in band, from the edge's one error
mapping. An Add waits for its namespaces' durable logs to open (``prepare``), and the
stream's next requests wait with it. A slow client blocks ``context.write``; nothing is
read meanwhile, and the hub's overflow policy of each subscription applies (drops are
reported in-band).

Every read pass and every further message of a pass first takes a turn from the
server's :class:`Turns`, so that an event fanned out to thousands of streams is read and
written a bounded number of streams per turn of the event loop, and other RPCs (Health,
publishes) advance in between.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import grpc
from anyio.abc import TaskGroup

from .. import Broadcaster, Ended, Subscription
from .._proto import policy_from_proto
from ..v1 import broadcaster_pb2 as pb
from ._caller import Caller
from ._drain import Drain, Recipient
from ._encode import EventEncoder, encode_add_result, encode_removed, single_epoch
from ._errors import RpcError, map_core_errors
from ._heartbeat_share import HeartbeatShare
from ._turns import Turns
from ._write_window import WriteWindow, write_in_window

__all__ = ["StreamLimits", "SubscribeStream"]

logger = logging.getLogger("broadcaster.grpc.subscribe")

_MAX_ID_LENGTH = 256

#: A stream lingers (``batch_linger``) only while each of its subscriptions can hold at
#: least this much in the hub meanwhile; a tighter policy bound would turn the wait into
#: drops.
_LINGER_MIN_EVENTS = 256
_LINGER_MIN_BYTES = 256 * 1024

#: Seconds one read pass may spend reading subscriptions before the stream lets the
#: event loop run (the rest are read in the next pass): a stream of 100 subscriptions
#: over 1,000 namespaces each, woken together by a heartbeat, would otherwise read them
#: all in one go (issue 9, ``all_ns_subscriptions``).
_READ_SLICE = 0.002


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds and batching of one Subscribe stream.

    :ivar max_subscriptions: live subscriptions per stream
    :ivar batch_max_events: deliveries in one EventBatch message
    :ivar batch_max_bytes: body size after which an EventBatch is closed
    :ivar batch_linger: the least seconds between two writes (see :meth:`SubscribeStream._serve`)
    """

    max_subscriptions: int = 1000
    batch_max_events: int = 4096
    batch_max_bytes: int = 1024 * 1024
    batch_linger: float = 0.002


class _Signal:
    """Wakes the stream's task. Entries hold it (and the ready set), not the stream, so
    that a closed stream is freed by reference counting.

    Under asyncio (grpc.aio's loop) the task waits on a bare future: an ``anyio.Event``
    costs several times as much (it looks up the backend each time), and a stream waits
    once per message it sends."""

    __slots__ = ("_event", "_future", "_loop")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        future = self._future
        if future is not None:
            self._future = None
            if not future.done():
                future.set_result(None)
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        """Return once :meth:`set` is called (after this call began)."""
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:  # another backend (trio)
                event = self._event = anyio.Event()
                await event.wait()
                return
        future = self._future = loop.create_future()
        await future


class _Entry(Recipient):
    """One subscription of the stream; parked in the hub as its waker (:meth:`set`)."""

    __slots__ = ("caller", "ready", "signal", "sub", "tight")

    def __init__(self, subscription_id: str, sub: Subscription,
                 ready: dict[_Entry, None], signal: _Signal,
                 caller: Caller | None = None) -> None:
        super().__init__(subscription_id)
        self.sub = sub
        self.caller = caller  # counted in its identity's subscriptions until forgotten
        self.ready = ready
        self.signal = signal
        max_events, max_bytes = sub.policy_bounds()
        # its policy bound is too small for the stream to hold events back
        self.tight = max_events < _LINGER_MIN_EVENTS or 0 < max_bytes < _LINGER_MIN_BYTES

    def set(self) -> None:
        """The hub woke the subscription: read it in the stream's next pass."""
        self.ready[self] = None
        self.signal.set()


class SubscribeStream:
    """State and tasks of one Subscribe RPC.

    :param hub: the broadcaster
    :param limits: bounds and batching
    :param write: sends one serialized SubscribeResponse (``context.write``)
    :param on_reject: called with a reason label whenever an Add is rejected
    :param encoder: serializes events (share one per server: its caches are per event
        type and second)
    :param turns: shared by every stream of the server, taken under the stream's peer
        (round-robin between connections; None: none taken)
    :param caller: who opened the stream: its permissions and limits apply to every Add
        (None: nothing checked)
    :param window: the server's write window: every write waits for room in it (None:
        none waited for)
    :param peer: the stream's connection (its peer address), for the window's turns
    :param heartbeats: the server's heartbeat budget (None: every heartbeat is sent)
    """

    __slots__ = ("__weakref__", "_aborted", "_caller", "_drain", "_encoder", "_heartbeats",
                 "_high_water", "_hub", "_input_done", "_limits", "_on_reject", "_outlet",
                 "_peer", "_ready", "_signal", "_stopping", "_subs", "_tg", "_tight",
                 "_turns", "_window", "_write")

    def __init__(
        self,
        hub: Broadcaster,
        limits: StreamLimits,
        write: Callable[[bytes], Awaitable[None]],
        on_reject: Callable[[str], None] = lambda reason: None,
        encoder: EventEncoder | None = None,
        turns: Turns | None = None,
        *,
        caller: Caller | None = None,
        window: WriteWindow | None = None,
        peer: str = "",
        heartbeats: HeartbeatShare | None = None,
    ) -> None:
        self._hub = hub
        self._caller = caller
        self._turns = turns
        self._window = window
        self._peer = peer
        self._encoder = encoder or EventEncoder()
        self._limits = limits
        self._write = write
        self._on_reject = on_reject
        self._subs: dict[str, _Entry] = {}
        self._tight = 0  # live subscriptions with a tight policy bound
        self._ready: dict[_Entry, None] = {}  # woken by the hub, in that order
        self._signal = _Signal()
        self._heartbeats = heartbeats
        self._drain = Drain(self._encoder, limits.batch_max_events, limits.batch_max_bytes,
                            heartbeats)
        self._high_water = 2 * limits.batch_max_events
        self._input_done = False
        self._aborted = False  # the requests failed: end after the write in flight
        self._stopping = False
        self._tg: TaskGroup | None = None
        # what the stream waits on its client for: all its subscriptions' liveness
        self._outlet = hub.outlet()

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, requests: AsyncIterator[pb.SubscribeRequest]) -> None:
        """Serve the stream until the client goes away, or until no subscription is left
        after the client half-closed or the server began shutting down. Every
        subscription is closed on the way out, whatever the cause.

        :raises Exception: what reading the requests raised (a request that could not be
            parsed), once the write in flight, if any, is over: gRPC cannot end the
            call (send a status) while a message is still being sent
        """
        failed: Exception | None = None
        if self._heartbeats is not None:
            self._drain.heartbeat_slot = self._heartbeats.join()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._serve)
                try:
                    async for request in requests:
                        kind = request.WhichOneof("kind")
                        if kind == "add":
                            await self._add(request.add)  # may open a durable log first
                        elif kind == "remove":  # a wide one waits for a turn of its own
                            await self._remove(request.remove.subscription_id)
                        else:
                            self._handle(request)
                    self._input_done = True
                except Exception as exc:
                    failed = exc
                    self._aborted = True
                self._notify()
            if failed is not None:
                raise failed
        finally:
            if self._heartbeats is not None:
                self._heartbeats.leave()
            await self._close_all()

    async def _close_all(self) -> None:
        """Close every subscription left, :data:`_READ_SLICE` seconds of it at a time
        with a checkpoint in between, and each one over many namespaces in a turn of its
        own (``aclose``; shielded: it finishes whatever the cause), so that streams of
        many subscriptions over many namespaces, closing together, do not hold the
        loop."""
        clock = _clock()
        with anyio.CancelScope(shield=True):
            deadline = clock() + _READ_SLICE
            for entry in list(self._subs.values()):
                if clock() >= deadline:
                    await anyio.lowlevel.checkpoint()
                    deadline = clock() + _READ_SLICE
                entry.closed = True
                await entry.sub.aclose()
                _forget(entry)
            self._subs.clear()

    def stop(self) -> None:
        """The server is shutting down: end the stream once nothing is left to send."""
        self._stopping = True
        self._notify()

    # -- requests ------------------------------------------------------------------------

    def _handle(self, request: pb.SubscribeRequest) -> None:
        kind = request.WhichOneof("kind")
        if kind == "ack":
            heartbeat_id = request.ack.heartbeat_id
            self._outlet.acked(heartbeat_id)
            for entry in self._subs.values():
                entry.sub.ack(heartbeat_id)
        else:
            # An empty request: answer as a rejected Add so the client learns why.
            self._reject("", RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                      "kind: one of add, remove or ack must be set"))

    async def _add(self, add: pb.SubscribeRequest.Add) -> None:
        sid = add.subscription_id
        try:
            sub = await self._open(sid, add)
        except RpcError as exc:
            return self._reject(sid, exc)
        entry = _Entry(sid, sub, self._ready, self._signal, self._caller)
        self._subs[sid] = entry
        self._tight += entry.tight
        epochs = sub.epochs()
        self._control(encode_add_result(
            sid, start_sequences=sub.start_positions(), epochs=epochs,
            epoch=single_epoch(self._hub.epoch, epochs.values())))
        entry.set()  # replay, or a heartbeat, may be ready at once

    async def _open(self, sid: str, add: pb.SubscribeRequest.Add) -> Subscription:
        """The registered subscription of *add*, its durable logs open (the stream's
        next requests wait meanwhile).

        :raises RpcError: naming the field at fault; UNAVAILABLE if a log cannot open
        """
        if not sid:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "subscription_id: must not be empty")
        if len(sid) > _MAX_ID_LENGTH:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"subscription_id: longer than {_MAX_ID_LENGTH} characters")
        if sid in self._subs:
            raise RpcError(grpc.StatusCode.ALREADY_EXISTS,
                           "subscription_id: already in use on this stream")
        if len(self._subs) >= self._limits.max_subscriptions:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"subscription_id: the stream has its maximum of "
                f"{self._limits.max_subscriptions} subscriptions", "stream_subscription_limit")
        with map_core_errors():
            namespaces = list(add.namespaces) or None
            policy = policy_from_proto(add.policy, self._hub.config, namespaces) \
                if add.HasField("policy") else None
            sub = self._hub.subscribe(
                namespaces, filters=list(add.filters), policy=policy,
                since=dict(add.since) or None, since_default=0 if add.replay_unlisted else None,
                epoch=_epochs(add), liveness="ack",
            )
            sub.outlet = self._outlet
            sub.heartbeat_maps = False  # the stream's Heartbeat carries them, once
            caller = self._caller
            if caller is None:
                await self._hub.prepare(sub)
                sub.open()
                return sub
            # the caller's permissions (what it may read) and limits, checked and counted
            sub.admit, new = caller.before_subscribe(self._hub, namespaces)
            try:
                await self._hub.prepare(sub)
                sub.open()
            except BaseException:
                caller.unsubscribed()
                raise
            caller.subscribed(self._hub, new)
        return sub

    def _reject(self, sid: str, error: RpcError) -> None:
        """Answer an Add (or a request of no kind) with *error*, in band."""
        self._on_reject(error.reason)
        self._control(encode_add_result(sid, error.wire_code, error.message))

    async def _remove(self, sid: str) -> None:
        entry = self._subs.pop(sid, None)
        if entry is not None:
            self._tight -= entry.tight
            entry.closed = True
            await entry.sub.aclose()
            _forget(entry)
        self._control(encode_removed(sid))

    # -- the stream's one task: read what the hub woke, write it -----------------------

    async def _serve(self) -> None:
        """Read the subscriptions the hub woke, in the order it woke them, and write what
        they gave; again until nothing is ready, then wait.

        An idle stream writes as soon as it is woken. Events that arrive while a write
        is in flight (or, with ``batch_linger``, sooner than that after the last write)
        wait in the hub and go out together in the next message: batches grow with the
        load, not with a fixed delay. A pass reads until the queue holds
        ``2 * batch_max_events`` items; the subscriptions left are read in the next one.
        Reading stops every :data:`_READ_SLICE` seconds to let the event loop run, and
        goes on into the same messages.
        """
        ready, drain, turns, outlet = self._ready, self._drain, self._turns, self._outlet
        window, peer = self._window, self._peer
        linger, clock = self._limits.batch_linger, _clock()
        last_write = -math.inf
        try:
            while not self._aborted:
                if not ready and not drain:
                    if (self._input_done or self._stopping) and not self._subs:
                        break
                    await self._signal.wait()
                    continue
                if linger and not self._tight:
                    wait = last_write + linger - clock()
                    if wait > 0:  # woken right after a write: let more land
                        await anyio.sleep(wait)
                if turns is not None:
                    await turns.take(peer)
                while ready and self._read(clock):
                    # the slice ran out: let the loop run, then read on into the same
                    # messages (each event still goes once with every id it matched)
                    await anyio.lowlevel.checkpoint()
                    if turns is not None:
                        await turns.take(peer)
                if not drain:
                    continue
                messages = drain.take(self._latest, self._ended)
                last = len(messages) - 1
                for i, message in enumerate(messages):
                    if i and turns is not None:
                        await turns.take(peer)
                    # the client is charged with the write, not with what came before
                    await write_in_window(window, peer, self._write, message, outlet)
                    outlet.write_done(drain.last_heartbeat if i == last else 0)
                if linger:
                    last_write = clock()
        except Exception as exc:  # the RPC is over (peer gone): grpc's internal error
            logger.debug("subscribe stream write failed: %r", exc)
        if not self._aborted:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()  # stop reading requests: the stream is over

    def _read(self, clock: Callable[[], float]) -> bool:
        """One pass over the woken subscriptions, into the queue (see :meth:`_serve`),
        for at most :data:`_READ_SLICE` seconds of *clock*; return whether woken ones
        were left for the next pass because that time ran out."""
        ready, drain = self._ready, self._drain
        max_events, high_water = self._limits.batch_max_events, self._high_water
        deadline = clock() + _READ_SLICE
        while ready and drain.queued_items < high_water:
            if clock() >= deadline:
                return True
            entry = next(iter(ready))
            del ready[entry]
            sub = entry.sub
            sub.unpark()
            if entry.closed:
                sub.close()
                continue
            try:
                items = sub.receive_batch_nowait(max_events)
            except anyio.WouldBlock:
                sub.park_waker(entry)
                continue
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                sub.close()
                continue
            drain.put(entry, items)
            if type(items[-1]) is Ended:
                sub.close()  # nothing follows Ended
            elif len(items) >= max_events:
                ready[entry] = None  # more may be ready: read it again next pass
            else:
                sub.park_waker(entry)  # everything ready was taken
        return False

    def _control(self, message: bytes) -> None:
        self._drain.put_message(message)
        self._notify()

    def _notify(self) -> None:
        self._signal.set()

    def _ended(self, recipient: Recipient) -> None:
        """Its Ended was taken: the subscription is over."""
        entry = self._subs.get(recipient.id)
        if entry is recipient:
            del self._subs[entry.id]
            self._tight -= entry.tight
            _forget(entry)

    def _latest(self) -> tuple[dict[str, int], dict[str, str]]:
        """The newest sequence and the epoch of each namespace the stream's
        subscriptions read (a Heartbeat's)."""
        latest: dict[str, int] = {}
        epochs: dict[str, str] = {}
        for entry in self._subs.values():
            sub = entry.sub
            # one whose namespaces are all listed already adds nothing (the same
            # namespaces' heads and epochs, read now): checked in C, so that a stream of
            # many all-namespaces subscriptions reads each namespace once, not once per
            # subscription
            if sub.cursors.keys() <= latest.keys():
                continue
            latest.update(sub.latest_sequences())
            epochs.update(sub.epochs())
        return latest, epochs


def _clock() -> Callable[[], float]:
    """The running loop's clock: asyncio's ``loop.time`` itself where it runs (what
    ``anyio.current_time`` returns, without looking up the backend at every call)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # another backend (trio)
        return anyio.current_time


def _forget(entry: _Entry) -> None:
    """The subscription left the stream: it no longer counts in its identity's limit."""
    caller, entry.caller = entry.caller, None
    if caller is not None:
        caller.unsubscribed()


def _epochs(add: pb.SubscribeRequest.Add) -> str | dict[str, str] | None:
    """The epochs of an Add's ``since`` values: per namespace (``epochs``, falling back
    on the single ``epoch`` for the other ``since`` namespaces), or one for all."""
    if not add.epochs:
        return add.epoch or None
    epochs = dict.fromkeys(add.since, add.epoch) if add.epoch else {}
    epochs.update(add.epochs)
    return epochs

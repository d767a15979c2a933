"""The ``broadcaster.v1.Broadcaster`` service: a thin adapter over the core hub.

Handlers are registered by hand (not through the generated servicer base) so that
Subscribe can send pre-serialized bytes: its response serializer is the identity.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import grpc

from .. import Broadcaster, PublishItem, validate_namespace
from .._auth import Permission
from .._proto import check_timestamp
from ..v1 import broadcaster_pb2 as pb
from ._batch_parse import OversizedBatch, batch_parser
from ._caller import CALLER, publishing
from ._encode import EventEncoder, single_epoch
from ._errors import SHUTTING_DOWN, RpcError, answering, map_core_errors
from ._heartbeat_share import HeartbeatShare
from ._registration import add_service
from ._subscribe_stream import StreamLimits, SubscribeStream
from ._telemetry import Telemetry
from ._turns import Turns
from ._write_window import WriteWindow

__all__ = ["SERVICE_NAME", "BroadcasterService"]

SERVICE_NAME = "broadcaster.v1.Broadcaster"

logger = logging.getLogger("broadcaster.grpc")

_Context = grpc.aio.ServicerContext[Any, Any]
#: a PublishStream request as its deserializer gives it
Batch = pb.PublishStreamRequest | OversizedBatch


def _identity(data: bytes) -> bytes:
    return data


def _item(event: pb.PublishRequest, index: int | None = None) -> PublishItem:
    """The core item of one event (``events[index]`` in error messages, if given)."""
    timestamp_ns = None
    if event.HasField("timestamp"):
        ts = event.timestamp
        field = "timestamp" if index is None else f"events[{index}].timestamp"
        timestamp_ns = check_timestamp(ts.seconds, ts.nanos, field) or None
    labels = event.labels
    payload = event.payload
    return PublishItem(event.topic, payload.value, payload.type_url,
                       dict(labels) if labels else {}, timestamp_ns, event.event_id or None)


#: Events converted between two yields to the event loop while a batch is read.
_SLICE = 1024
#: Batches of one PublishStream waiting for their answer to be written (in flight on a
#: durable log), besides the one being written; then the stream's next batch waits.
_PIPELINE = 16


async def _runs(events: Sequence[pb.PublishRequest]) -> list[tuple[int, str, list[PublishItem]]]:
    """Consecutive events of one namespace: (offset, namespace, items). Converting a
    large batch yields to other tasks every ``_SLICE`` events (nothing is published
    before every event of the batch is converted and checked)."""
    events = list(events)  # one Python wrapper per event, not one per access
    count = len(events)
    items: list[PublishItem] = []
    for start in range(0, count, _SLICE):
        if start:
            await anyio.lowlevel.checkpoint()
        items += [_item(events[i], i) for i in range(start, min(start + _SLICE, count))]
    names = [event.namespace for event in events]
    if not names or names.count(names[0]) == count:
        return [(0, names[0], items)] if names else []
    runs = []
    start = 0
    while start < count:
        ns = names[start]
        end = start + 1
        while end < count and names[end] == ns:
            end += 1
        runs.append((start, ns, items[start:end]))
        start = end
    return runs


def _renamed(field: str, offset: int = 0) -> str:
    """The request's name of a field the core names as ``publish_many`` does:
    ``items[i].x`` (``x`` for i = 0) of a batch that starts at ``events[offset]``."""
    if field.startswith("items["):
        index, _, rest = field[len("items["):].partition("]")
        return f"events[{offset + int(index)}]{rest}"
    if field.startswith(("events[", "limits.")):  # named by the conversion (timestamps),
        return field                                # or a limit of the caller
    return f"events[{offset}].{field}"


class BroadcasterService:
    """Publish, PublishStream, Subscribe and Stats over *hub*.

    :param hub: the running broadcaster
    :param limits: Subscribe stream bounds and batching
    :param telemetry: server figures (streams, rejections, uptime)
    :param publish_batch_max_events: events in one PublishStream batch
    :param turns: turns of the event loop shared by the Subscribe streams
    :param window: writes in flight shared by the Subscribe streams (None: unbounded)
    :param heartbeats: the Subscribe streams' heartbeat budget (None: unbounded)
    """

    def __init__(self, hub: Broadcaster, limits: StreamLimits, telemetry: Telemetry, *,
                 publish_batch_max_events: int = 10_000, turns: Turns | None = None,
                 window: WriteWindow | None = None,
                 heartbeats: HeartbeatShare | None = None) -> None:
        self._hub = hub
        self._heartbeats = heartbeats
        self._turns = turns
        self._window = window
        self._limits = limits
        self._telemetry = telemetry
        self._max_batch_events = publish_batch_max_events
        self._streams: set[SubscribeStream] = set()
        self._publishers: set[anyio.CancelScope] = set()
        self._stopping = False
        # each event serialized once for all streams, kept while the event lives and
        # counted with its retained bytes; only while there are streams to share it with
        self._encoder = EventEncoder(on_cache=hub.account_cached)
        self._encoder.cache.enabled = False

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve the methods on *server*, each registered with gRPC core (see
        :func:`add_service`)."""
        add_service(server, SERVICE_NAME, self.method_handlers())

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """The handler of each method, by name."""
        return {
            "Publish": grpc.unary_unary_rpc_method_handler(
                self.publish,
                request_deserializer=pb.PublishRequest.FromString,
                response_serializer=pb.PublishResponse.SerializeToString,
            ),
            "PublishStream": grpc.stream_stream_rpc_method_handler(
                self.publish_stream,
                request_deserializer=batch_parser(self._max_batch_events),
                response_serializer=pb.PublishStreamResponse.SerializeToString,
            ),
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                self.subscribe,
                request_deserializer=pb.SubscribeRequest.FromString,
                response_serializer=_identity,
            ),
            "Stats": grpc.unary_unary_rpc_method_handler(
                self.stats,
                request_deserializer=pb.StatsRequest.FromString,
                response_serializer=pb.StatsResponse.SerializeToString,
            ),
        }

    def stop(self) -> None:
        """Shutting down: every Subscribe stream ends once its subscriptions ended."""
        self._stopping = True
        for stream in list(self._streams):
            stream.stop()
        for scope in list(self._publishers):
            scope.cancel()

    @property
    def subscribe_streams(self) -> int:
        return len(self._streams)

    # -- Publish ------------------------------------------------------------------------

    async def publish(self, request: pb.PublishRequest, context: _Context) -> pb.PublishResponse:
        async with answering(context, self._telemetry.reject):
            item = _item(request)
            validate_namespace(request.namespace)
            with publishing(self._hub, [(request.namespace, "namespace", 1)]) as published:
                seq = await self._hub.publish(
                    request.namespace, item.topic, item.payload, type_url=item.type_url,
                    labels=item.labels, timestamp_ns=item.timestamp_ns, event_id=item.event_id,
                )
                published(1)
        return pb.PublishResponse(namespace=request.namespace, sequence=seq,
                                  epoch=self._hub.epoch_of(request.namespace))

    async def publish_stream(
        self, requests: AsyncIterator[Batch], context: _Context
    ) -> None:
        # On shutdown a stream waiting for its next batch ends at once; one publishing
        # a batch answers it first. Either way the client gets UNAVAILABLE.
        #
        # The answers go out from a task of their own, in order, so that the stream's next
        # batch is read while the answer to the last one is written: each is a completion
        # of gRPC core's that waits for its turn of a busy loop, and one after the other
        # they put two such waits per batch into every event's latency. On a durable log
        # a batch also starts once the one before has its place in the log (so the
        # stream's batches are stored in its order), while their acknowledgements (a
        # commit, JetStream's acks) overlap. At most ``_PIPELINE`` batches wait for their
        # answer to be written (besides the one being written); then the next waits.
        durable = self._hub.durable
        send, receive = anyio.create_memory_object_stream[
            tuple[anyio.Event, list[pb.PublishStreamResponse]]](_PIPELINE)

        async def run(request: Batch, submitted: anyio.Event,
                      done: anyio.Event, box: list[pb.PublishStreamResponse]) -> None:
            try:
                box.append(await self._publish_batch(request, submitted.set))
            finally:
                submitted.set()
                done.set()

        async def answer() -> None:
            async with receive:
                async for done, box in receive:
                    await done.wait()
                    if box:  # (none: its batch failed, and so does the call)
                        await context.write(box[0])

        reading = anyio.CancelScope()
        async with answering(context, self._telemetry.reject):
            failed: Exception | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(answer)
                self._publishers.add(reading)
                try:
                    with send, reading:
                        async for request in requests:
                            self._publishers.discard(reading)
                            done = anyio.Event()
                            box: list[pb.PublishStreamResponse] = []
                            await send.send((done, box))
                            submitted = anyio.Event()
                            if durable:
                                tg.start_soon(run, request, submitted, done, box)
                                await submitted.wait()
                            else:  # done as soon as published: no commit to overlap
                                await run(request, submitted, done, box)
                            if self._stopping:
                                break
                            self._publishers.add(reading)
                except Exception as exc:
                    # a malformed request: the batches in flight are answered first (no
                    # write may be pending when the call ends)
                    failed = exc
                finally:
                    self._publishers.discard(reading)
            if failed is not None:
                raise failed
            if self._stopping:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

    async def _publish_batch(self, request: Batch,
                             submitted: Callable[[], None] | None = None
                             ) -> pb.PublishStreamResponse:
        """The answer to one batch: its sequences and the epochs of its namespaces, or
        the in-band error that refused it (the stream goes on).

        :param submitted: called once the batch's place in the log is fixed (see
            ``Broadcaster.publish_many``)
        """
        hub = self._hub
        response = pb.PublishStreamResponse(batch_id=request.batch_id, epoch=hub.epoch)
        try:
            if isinstance(request, OversizedBatch):  # counted, not parsed (_batch_parse)
                raise self._too_large(request.events)
            sequences, names = await self._publish_events(request.events, submitted)
        except RpcError as exc:
            self._telemetry.reject(exc.reason)
            response.error.code = exc.wire_code
            response.error.message = exc.message
            return response
        response.sequences.extend(sequences)
        epochs = {ns: hub.epoch_of(ns) for ns in names}
        response.epochs.update(epochs)
        response.epoch = single_epoch(hub.epoch, epochs.values())
        return response

    def _too_large(self, events: int) -> RpcError:
        return RpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"events: {events} events exceed the limit of {self._max_batch_events} "
            "per batch (publish_batch_max_events); split the batch", "batch_too_large")

    async def _publish_events(self, events: Sequence[pb.PublishRequest],
                              submitted: Callable[[], None] | None = None
                              ) -> tuple[list[int], set[str]]:
        """Publish a batch all or none (only a rate quota or the namespace limit taken
        by another publisher between the check and the publish, or a durable log failing
        between two namespaces, can still split a batch that spans namespaces). Returns
        the sequences and the namespaces published into.

        :param submitted: given to the ``publish_many`` of the batch's last namespace
        :raises RpcError: naming ``events[i]``
        """
        if len(events) > self._max_batch_events:  # before any work per event
            raise self._too_large(len(events))
        hub = self._hub
        with map_core_errors(_renamed):
            runs = await _runs(events)
            needs = [(validate_namespace(ns, f"events[{offset}].namespace"),
                      f"events[{offset}].namespace", len(items)) for offset, ns, items in runs]
        sequences: list[int] = []
        # the caller's permissions and limits are checked and taken first, settled after
        with map_core_errors(_renamed), publishing(hub, needs) as published:
            if len(runs) > 1:
                await hub.check_publish([(ns, items) for _, ns, items in runs])
            last = len(runs) - 1
            for i, (offset, ns, items) in enumerate(runs):
                with map_core_errors(functools.partial(_renamed, offset=offset)):
                    done = await hub.publish_many(
                        ns, items, submitted=submitted if i == last else None)
                sequences += done
                published(len(done))
        return sequences, {ns for _, ns, _ in runs}

    # -- Subscribe ----------------------------------------------------------------------

    async def subscribe(
        self, requests: AsyncIterator[pb.SubscribeRequest], context: _Context
    ) -> None:
        if self._stopping:
            async with answering(context, self._telemetry.reject):
                raise RpcError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        stream = SubscribeStream(self._hub, self._limits, context.write,
                                 self._telemetry.reject, self._encoder, self._turns,
                                 caller=CALLER.get(), window=self._window,
                                 peer=context.peer(),
                                 heartbeats=self._heartbeats)
        self._streams.add(stream)
        self._encoder.cache.enabled = len(self._streams) > 1  # others to share with
        try:
            await stream.run(requests)
        finally:
            self._streams.discard(stream)
            self._encoder.cache.enabled = len(self._streams) > 1

    # -- Stats --------------------------------------------------------------------------

    async def stats(self, request: pb.StatsRequest, context: _Context) -> pb.StatsResponse:
        stats = await self._hub.statistics_sliced()
        wanted = list(request.namespaces)
        caller = CALLER.get()
        visible: Callable[[str], bool] = (lambda name: True) if caller is None \
            else caller.sees_stats
        async with answering(context, self._telemetry.reject):
            for i, name in enumerate(wanted):
                validate_namespace(name, f"namespaces[{i}]")
                if caller is not None:  # refused before saying whether it exists
                    caller.check(Permission.STATS, name, f"namespaces[{i}]")
                if name not in stats.namespaces:
                    raise RpcError(grpc.StatusCode.NOT_FOUND,
                                   f"namespaces[{i}]: no namespace {name!r}")
        response = pb.StatsResponse(
            subscriptions=stats.subscriptions,
            streams=self._telemetry.streams,
            uptime_seconds=self._telemetry.uptime(),
            epoch=stats.epoch,
        )
        for name, ns in stats.namespaces.items():
            if (wanted and name not in wanted) or not visible(name):
                continue
            response.namespaces.add(
                namespace=name, published=ns.published, delivered=ns.delivered,
                dropped=ns.dropped, subscribers=ns.subscribers, evicted=ns.evicted,
                head_sequence=ns.head, oldest_sequence=ns.oldest,
                retained_events=ns.retained_events, retained_bytes=ns.retained_bytes,
                max_lag=ns.max_lag, epoch=ns.epoch, deduplicated=ns.deduplicated,
                log_unavailable=not ns.available,
            )
        return response

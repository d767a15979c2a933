"""containerd's event API (``containerd.services.events.v1.Events``) over the hub, and the
``Introspection.Server`` call newer ``ctr`` builds make, so that ``ctr events``,
``containerd publish`` (what v1 shims run) and containerd's Go client work unchanged.

Modelled on containerd's ``plugins/services/events/service.go``:

* ``Publish``: the namespace comes from the ``containerd-namespace`` gRPC metadata; the
  Any is stored unchanged, byte for byte (``payload`` = its value, ``type_url`` = its URL).
* ``Forward``: publishes a complete envelope; its namespace and timestamp are kept.
* ``Subscribe``: every namespace unless a ``namespace==`` filter narrows it (the
  ``containerd-namespace`` metadata ``ctr`` always sends is ignored, as containerd does);
  filters in containerd's syntax, applied here. One ``Envelope`` per message, its type URL
  in the bare form containerd clients decode (``containerd.events.TaskExit``).

Limitations (the containerd API has no acks and no notices):

* A subscriber that falls behind its bound is handled by the stream's overflow policy
  (``ServerConfig.containerd_policy``). The default, ``disconnect`` at 4096 events, ends
  the stream with RESOURCE_EXHAUSTED naming the bound, so the client knows it lost
  events; ``drop_oldest`` / ``drop_newest`` keep the stream but the client cannot be
  told of the gap (the drops are counted in the hub's drop metrics and logged, at most
  one line per namespace per interval).
* Liveness is ``consume``: a stream whose client stops reading long enough for the
  writes to stall (``max_missed_heartbeats`` heartbeat intervals of writes in flight: the
  stream's wait for its turn of a busy loop is not counted) is ended by the hub with
  UNAVAILABLE, as is every stream when the hub shuts down.
* Order is kept within a namespace; events of different namespaces may interleave
  differently than they were published.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import empty_pb2

from .. import (
    AvailabilityNotice,
    Broadcaster,
    DropNotice,
    Ended,
    EndReason,
    Event,
    HubConfig,
    Policy,
    Subscription,
    validate_namespace,
    validate_topic,
)
from .._proto import MIN_SECONDS, check_timestamp
from ..containerd.services.events.v1 import events_pb2
from ..containerd.services.introspection.v1 import introspection_pb2
from ._caller import CALLER, publishing
from ._envelope import EnvelopeEncoder
from ._errors import SHUTTING_DOWN, Rename, RpcError, abort, answering, map_core_errors
from ._ratelog import RateLimitedLog
from ._registration import add_service
from ._turns import Turns
from ._write_window import WriteWindow, write_in_window

__all__ = [
    "EVENTS_SERVICE",
    "INTROSPECTION_SERVICE",
    "NAMESPACE_METADATA",
    "ContainerdEvents",
    "ContainerdIntrospection",
    "add_containerd_services",
    "default_policy",
]

logger = logging.getLogger("broadcaster.grpc.containerd")

EVENTS_SERVICE = events_pb2.DESCRIPTOR.services_by_name["Events"].full_name
INTROSPECTION_SERVICE = introspection_pb2.DESCRIPTOR.services_by_name["Introspection"].full_name
#: The gRPC metadata key containerd reads the namespace of a call from.
NAMESPACE_METADATA = "containerd-namespace"

#: Bound, in events, of the default Subscribe policy (``disconnect``).
DEFAULT_MAX_EVENTS = 4096

_EMPTY = empty_pb2.Empty()

Context = grpc.aio.ServicerContext[Any, Any]


def _renaming(names: Mapping[str, str]) -> Rename:
    """Core field names as containerd's messages spell them."""
    return lambda field: names.get(field, field)


#: Core fields of a publish, named as in containerd's PublishRequest and its metadata.
_PUBLISH_FIELDS = _renaming({"payload": "event", "type_url": "event.type_url",
                             "namespace": NAMESPACE_METADATA})
#: ... and as in a ForwardRequest.
_FORWARD_FIELDS = _renaming({"payload": "envelope.event", "type_url": "envelope.event.type_url",
                             "topic": "envelope.topic", "namespace": "envelope.namespace"})


class ContainerdEvents:
    """The ``containerd.services.events.v1.Events`` handlers over *hub*.

    :param hub: the hub to publish to and subscribe from
    :param policy: overflow policy of Subscribe streams (``disconnect`` at 4096 events
        by default, capped to the hub's namespace limits)
    :param max_batch: events taken from the hub per wake-up of a Subscribe stream
    :param drop_log: where drops and unsendable events are logged (one line per
        namespace and interval; 10 s by default)
    :param turns: turns of the event loop shared by the server's Subscribe streams: each
        write takes one, under the stream's peer (round-robin between connections)
    :param window: writes in flight shared by the server's Subscribe streams: each write
        waits for room in it (None: unbounded)
    :param on_reject: called with the reason of every call refused (the server counts
        them in ``broadcaster_grpc_rejected_total``)
    """

    def __init__(
        self,
        hub: Broadcaster,
        *,
        policy: Policy | None = None,
        max_batch: int = 256,
        drop_log: RateLimitedLog | None = None,
        turns: Turns | None = None,
        window: WriteWindow | None = None,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._hub = hub
        self._on_reject = on_reject
        self._turns = turns
        self._window = window
        self._policy = policy or default_policy(hub.config)
        self._max_batch = max_batch
        # each event's envelope built once and kept while it lives, counted with the
        # event's retained bytes; only while there are streams to share it with
        self._envelopes = EnvelopeEncoder(hub.account_cached, self._unsendable)
        self._envelopes.cache.enabled = False
        self._streams = 0
        self._log = drop_log or RateLimitedLog(logger, 10.0)
        #: events that could not be sent (timestamp outside Go's range)
        self.unsendable = 0

    # -- Publish / Forward --------------------------------------------------------------

    async def Publish(
        self, request: events_pb2.PublishRequest, context: Context
    ) -> empty_pb2.Empty:
        """Publish ``request.event`` to ``request.topic`` in the metadata's namespace."""
        async with answering(context, self._on_reject, _PUBLISH_FIELDS):
            event = request.event
            namespace = _namespace_of(context)
            with publishing(self._hub, [(namespace, "namespace", 1)]) as published:
                await self._hub.publish(namespace, request.topic, event.value,
                                        type_url=event.type_url)
                published(1)
        return _EMPTY

    async def Forward(
        self, request: events_pb2.ForwardRequest, context: Context
    ) -> empty_pb2.Empty:
        """Publish a complete envelope, keeping its namespace and timestamp."""
        async with answering(context, self._on_reject, _FORWARD_FIELDS):
            env = request.envelope
            timestamp_ns = _check_forwarded(request)
            with publishing(self._hub, [(env.namespace, "namespace", 1)]) as published:
                await self._hub.publish(env.namespace, env.topic, env.event.value,
                                        type_url=env.event.type_url, timestamp_ns=timestamp_ns)
                published(1)
        return _EMPTY

    # -- Subscribe ----------------------------------------------------------------------

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: Context
    ) -> None:
        """Stream every matching event of every namespace as an ``Envelope``, until the
        client goes away or the hub ends the subscription."""
        async with answering(context, self._on_reject):
            sub = self._hub.subscribe(None, filters=list(request.filters), policy=self._policy)
            # liveness counts only the writes the client did not take, not the stream's
            # wait for its turn of a busy loop
            sub.outlet = self._hub.outlet()
            sub.heartbeat_maps = False  # containerd's API has no heartbeat
            caller = CALLER.get()
            if caller is not None:  # sees only the namespaces it may subscribe to
                sub.admit, _ = caller.before_subscribe(self._hub, None)
            try:
                async with sub:
                    self._streams += 1
                    self._envelopes.cache.enabled = self._streams > 1
                    try:
                        await self._pump(sub, context)
                    finally:
                        self._streams -= 1
                        self._envelopes.cache.enabled = self._streams > 1
            finally:
                if caller is not None:
                    caller.unsubscribed()

    async def _pump(self, sub: Subscription, context: Context) -> None:
        write, encode, receive = context.write, self._envelopes.envelope, sub.receive_batch
        max_batch, turns, outlet = self._max_batch, self._turns, sub.outlet
        window, peer = self._window, context.peer()
        while True:
            items = await receive(max_batch)  # Ended comes before EndOfStream
            for item in items:
                if type(item) is Event:
                    data = encode(item)
                    if data is not None:
                        if turns is not None:
                            await turns.take(peer)
                        await write_in_window(window, peer, write, data, outlet)
                        if outlet is not None:
                            outlet.write_done()
                elif isinstance(item, DropNotice):
                    self._log.log(
                        logging.WARNING, ("drop", item.namespace),
                        "containerd subscriber lost events (the containerd API cannot "
                        "report drops) peer=%s namespace=%s count=%d first=%d last=%d "
                        "reason=%s", context.peer(), item.namespace, item.count,
                        item.first_sequence, item.last_sequence, item.reason,
                    )
                elif isinstance(item, AvailabilityNotice):  # not a refusal: not counted
                    logger.warning(
                        "containerd subscriber %s: the log of namespace %r is %s (%s): the "
                        "containerd API cannot say so", context.peer(), item.namespace,
                        "available again" if item.available else "unavailable", item.reason,
                    )
                elif isinstance(item, Ended):  # an end, not a refusal: not counted
                    await abort(context, _ended(item, self._policy))

    def _unsendable(self, event: Event) -> None:
        self.unsendable += 1
        self._log.log(
            logging.WARNING, ("unsendable", event.namespace),
            "cannot send an event to containerd subscribers: its timestamp is outside "
            "protobuf's range namespace=%s sequence=%d timestamp_ns=%d",
            event.namespace, event.sequence, event.timestamp_ns,
        )


def _ended(item: Ended, policy: Policy) -> RpcError:
    """The status that ends a stream whose subscription the hub ended."""
    if item.reason is EndReason.HUB_CLOSED:
        return RpcError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    if item.reason is EndReason.PERMISSION_REVOKED:
        return RpcError(grpc.StatusCode.PERMISSION_DENIED,
                        f"subscription ended (permission_revoked): {item.message}")
    if item.reason is EndReason.SLOW_CONSUMER:
        bound = f"{policy.max_events} events" + (
            f" or {policy.max_bytes} bytes" if policy.max_bytes else "")
        return RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscription ended (slow_consumer): the subscriber fell more than "
                        f"{bound} behind and events were not delivered; subscribe again "
                        f"(the server's containerd_policy is disconnect): {item.message}")
    return RpcError(grpc.StatusCode.UNAVAILABLE, f"subscription ended ({item.reason}): "
                    f"{item.message}")


def default_policy(config: HubConfig) -> Policy:
    """``disconnect`` at 4096 events, bounded within every configured namespace's policy
    limit (a containerd subscription covers namespaces created later too)."""
    limits = [config.default_namespace, *config.namespaces.values()]
    return Policy.disconnect(min(DEFAULT_MAX_EVENTS, *(c.max_policy_events for c in limits)))


def _namespace_of(context: Context) -> str:
    """The namespace of a call, from its metadata.

    :raises RpcError: if it is missing; :raises InvalidNamespace: if it is malformed
    """
    value = next(
        (v for k, v in context.invocation_metadata() or () if k == NAMESPACE_METADATA), ""
    )
    if not value:
        raise RpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{NAMESPACE_METADATA}: namespace is required (set the gRPC metadata key "
            f"{NAMESPACE_METADATA!r})",
        )
    return validate_namespace(str(value), NAMESPACE_METADATA)


def _check_forwarded(request: events_pb2.ForwardRequest) -> int:
    """containerd's exchange.validateEnvelope: valid namespace and topic, timestamp set.

    :returns: the timestamp in nanoseconds since the Unix epoch
    :raises RpcError, InvalidArgument: naming the field at fault
    """
    if not request.HasField("envelope"):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "envelope: is required")
    env = request.envelope
    with map_core_errors():  # these name envelope.* themselves
        validate_namespace(env.namespace, "envelope.namespace")
        validate_topic(env.topic, "envelope.topic")
        ts = env.timestamp
        if not env.HasField("timestamp") or (ts.seconds, ts.nanos) == (MIN_SECONDS, 0):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "envelope.timestamp: must be set on a forwarded event")
        return check_timestamp(ts.seconds, ts.nanos, "envelope.timestamp")


class ContainerdIntrospection:
    """``Introspection.Server``: a stable id (the hub's epoch) and no deprecations, so
    ``ctr`` 1.7+ has nothing to warn about.

    :param hub: the hub whose epoch is the server's uuid
    """

    def __init__(self, hub: Broadcaster) -> None:
        self._response = introspection_pb2.ServerResponse(uuid=hub.epoch, pid=os.getpid())

    async def Server(
        self, request: empty_pb2.Empty, context: Context
    ) -> introspection_pb2.ServerResponse:
        """Describe this server."""
        return self._response


def _identity(data: bytes) -> bytes:
    return data


def add_containerd_services(
    server: grpc.aio.Server,
    hub: Broadcaster,
    *,
    policy: Policy | None = None,
    max_batch: int = 256,
    events: ContainerdEvents | None = None,
) -> list[str]:
    """Register containerd's Events and Introspection services on *server*.

    :param server: a ``grpc.aio`` server, not yet started
    :param hub: the hub behind them (running on the server's event loop)
    :param policy: overflow policy of Subscribe streams (see :class:`ContainerdEvents`)
    :param max_batch: events taken from the hub per wake-up of a Subscribe stream
    :param events: the Events handlers to register (shared by several servers over one
        hub); *policy* and *max_batch* are ignored then
    :returns: the full service names, for health checking and reflection
    """
    if events is None:
        events = ContainerdEvents(hub, policy=policy, max_batch=max_batch)
    intro = ContainerdIntrospection(hub)
    add_service(server, EVENTS_SERVICE, {
        "Publish": grpc.unary_unary_rpc_method_handler(
            events.Publish,
            request_deserializer=events_pb2.PublishRequest.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
        "Forward": grpc.unary_unary_rpc_method_handler(
            events.Forward,
            request_deserializer=events_pb2.ForwardRequest.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
        # Envelopes are written already serialized (shared between streams).
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            events.Subscribe,
            request_deserializer=events_pb2.SubscribeRequest.FromString,
            response_serializer=_identity,
        ),
    })
    add_service(server, INTROSPECTION_SERVICE, {
        "Server": grpc.unary_unary_rpc_method_handler(
            intro.Server,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=introspection_pb2.ServerResponse.SerializeToString,
        ),
    })
    return [EVENTS_SERVICE, INTROSPECTION_SERVICE]

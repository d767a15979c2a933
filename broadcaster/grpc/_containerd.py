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
  writes to stall (``max_missed_heartbeats`` heartbeat intervals) is ended by the hub with
  UNAVAILABLE, as is every stream when the hub shuts down.
* Order is kept within a namespace; events of different namespaces may interleave
  differently than they were published.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, NoReturn

import anyio
import grpc
from google.protobuf import empty_pb2

from .._core._config import HubConfig
from .._core._errors import BroadcasterError, InvalidArgument
from .._core._hub import Broadcaster
from .._core._policy import Policy
from .._core._subscription import Subscription
from .._core._types import AvailabilityNotice, DropNotice, Ended, EndReason, Event
from .._core._validation import validate_namespace, validate_topic
from .._typeurl import containerd_type_url
from ..containerd.services.events.v1 import events_pb2
from ..containerd.services.introspection.v1 import introspection_pb2
from ._ratelog import RateLimitedLog
from ._status import status_of
from ._timestamps import MAX_SECONDS, MIN_SECONDS, check_timestamp
from ._turns import Turns

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
_MISSING = object()

Context = grpc.aio.ServicerContext[Any, Any]


class _Reject(Exception):
    """A call to answer with an error status: raised in the handlers' helpers, turned
    into ``context.abort`` by the handler."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reject_core(exc: BroadcasterError, renames: dict[str, str]) -> _Reject:
    field = renames.get(exc.field, exc.field)
    return _Reject(status_of(exc), f"{field}: {exc.message}")


async def _abort(context: Context, reject: _Reject) -> NoReturn:
    await context.abort(reject.code, reject.message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def _closed() -> _Reject:
    return _Reject(grpc.StatusCode.UNAVAILABLE, "the broadcaster is shutting down")


class ContainerdEvents:
    """The ``containerd.services.events.v1.Events`` handlers over *hub*.

    :param hub: the hub to publish to and subscribe from
    :param policy: overflow policy of Subscribe streams (``disconnect`` at 4096 events
        by default, capped to the hub's namespace limits)
    :param max_batch: events taken from the hub per wake-up of a Subscribe stream
    :param cache_size: envelopes kept serialized for other subscribers of the same event
    :param drop_log: where drops and unsendable events are logged (one line per
        namespace and interval; 10 s by default)
    :param turns: turns of the event loop shared by the server's Subscribe streams: each
        write takes one
    """

    def __init__(
        self,
        hub: Broadcaster,
        *,
        policy: Policy | None = None,
        max_batch: int = 256,
        cache_size: int = 4096,
        drop_log: RateLimitedLog | None = None,
        turns: Turns | None = None,
    ) -> None:
        self._hub = hub
        self._turns = turns
        self._policy = policy or default_policy(hub.config)
        self._max_batch = max_batch
        self._cache: OrderedDict[tuple[str, int], bytes | None] = OrderedDict()
        self._cache_size = cache_size
        self._log = drop_log or RateLimitedLog(logger, 10.0)
        #: events that could not be sent (timestamp outside Go's range)
        self.unsendable = 0

    # -- Publish / Forward --------------------------------------------------------------

    async def Publish(
        self, request: events_pb2.PublishRequest, context: Context
    ) -> empty_pb2.Empty:
        """Publish ``request.event`` to ``request.topic`` in the metadata's namespace."""
        try:
            namespace = _namespace_of(context)
            event = request.event
            await self._publish(namespace, request.topic, event.value, event.type_url, None,
                                {"payload": "event", "namespace": NAMESPACE_METADATA})
        except _Reject as reject:
            await _abort(context, reject)
        return _EMPTY

    async def Forward(
        self, request: events_pb2.ForwardRequest, context: Context
    ) -> empty_pb2.Empty:
        """Publish a complete envelope, keeping its namespace and timestamp."""
        try:
            env = request.envelope
            _check_forwarded(request)
            timestamp_ns = env.timestamp.seconds * 1_000_000_000 + env.timestamp.nanos
            renames = {"payload": "envelope.event", "topic": "envelope.topic",
                       "namespace": "envelope.namespace"}
            await self._publish(env.namespace, env.topic, env.event.value, env.event.type_url,
                                timestamp_ns, renames)
        except _Reject as reject:
            await _abort(context, reject)
        return _EMPTY

    async def _publish(
        self,
        namespace: str,
        topic: str,
        payload: bytes,
        type_url: str,
        timestamp_ns: int | None,
        renames: dict[str, str],
    ) -> None:
        try:
            await self._hub.publish(
                namespace, topic, payload, type_url=type_url, timestamp_ns=timestamp_ns
            )
        except BroadcasterError as exc:
            raise _reject_core(exc, renames) from None
        except anyio.ClosedResourceError:
            raise _closed() from None

    # -- Subscribe ----------------------------------------------------------------------

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: Context
    ) -> None:
        """Stream every matching event of every namespace as an ``Envelope``, until the
        client goes away or the hub ends the subscription."""
        try:
            await self._stream(list(request.filters), context)
        except _Reject as reject:
            await _abort(context, reject)

    async def _stream(self, filters: list[str], context: Context) -> None:
        try:
            sub = self._hub.subscribe(None, filters=filters, policy=self._policy)
        except BroadcasterError as exc:
            raise _reject_core(exc, {}) from None
        try:
            async with sub:
                await self._pump(sub, context)
        except anyio.ClosedResourceError:
            raise _closed() from None

    async def _pump(self, sub: Subscription, context: Context) -> None:
        write, encode, receive = context.write, self._encode, sub.receive_batch
        max_batch, turns = self._max_batch, self._turns
        while True:
            try:
                items = await receive(max_batch)
            except anyio.EndOfStream:  # pragma: no cover (Ended is handled first)
                raise _closed() from None
            for item in items:
                if type(item) is Event:
                    data = encode(item)
                    if data is not None:
                        if turns is not None:
                            await turns.take()
                        await write(data)
                elif isinstance(item, DropNotice):
                    self._log.log(
                        logging.WARNING, ("drop", item.namespace),
                        "containerd subscriber lost events (the containerd API cannot "
                        "report drops) peer=%s namespace=%s count=%d first=%d last=%d "
                        "reason=%s", context.peer(), item.namespace, item.count,
                        item.first_sequence, item.last_sequence, item.reason,
                    )
                elif isinstance(item, AvailabilityNotice):
                    logger.warning(
                        "containerd subscriber %s: the log of namespace %r is %s (%s): the "
                        "containerd API cannot say so", context.peer(), item.namespace,
                        "available again" if item.available else "unavailable", item.reason,
                    )
                elif isinstance(item, Ended):
                    raise _ended(item, self._policy)

    def _encode(self, event: Event) -> bytes | None:
        """The serialized Envelope of *event*, built once for all containerd streams."""
        key = (event.namespace, event.sequence)
        cache = self._cache
        cached = cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        data = _envelope_bytes(event)
        if data is None:
            self.unsendable += 1
            self._log.log(
                logging.WARNING, ("unsendable", event.namespace),
                "cannot send an event to containerd subscribers: its timestamp is outside "
                "protobuf's range namespace=%s sequence=%d timestamp_ns=%d",
                event.namespace, event.sequence, event.timestamp_ns,
            )
        cache[key] = data
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return data


def _envelope_bytes(event: Event) -> bytes | None:
    seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return None  # a Go client would fail to decode the whole stream
    env = events_pb2.Envelope(namespace=event.namespace, topic=event.topic)
    ts = env.timestamp
    ts.seconds = seconds
    ts.nanos = nanos
    if event.type_url or event.payload:
        any_ = env.event
        any_.type_url = containerd_type_url(event.type_url)
        any_.value = bytes(event.payload)
    return env.SerializeToString()


def _ended(item: Ended, policy: Policy) -> _Reject:
    if item.reason is EndReason.HUB_CLOSED:
        return _closed()
    if item.reason is EndReason.SLOW_CONSUMER:
        bound = f"{policy.max_events} events" + (
            f" or {policy.max_bytes} bytes" if policy.max_bytes else "")
        return _Reject(grpc.StatusCode.RESOURCE_EXHAUSTED,
                       f"subscription ended (slow_consumer): the subscriber fell more than "
                       f"{bound} behind and events were not delivered; subscribe again "
                       f"(the server's containerd_policy is disconnect): {item.message}")
    return _Reject(grpc.StatusCode.UNAVAILABLE, f"subscription ended ({item.reason}): "
                   f"{item.message}")


def default_policy(config: HubConfig) -> Policy:
    """``disconnect`` at 4096 events, bounded within every configured namespace's policy
    limit (a containerd subscription covers namespaces created later too)."""
    limits = [config.default_namespace, *config.namespaces.values()]
    return Policy.disconnect(min(DEFAULT_MAX_EVENTS, *(c.max_policy_events for c in limits)))


def _namespace_of(context: Context) -> str:
    value = next(
        (v for k, v in context.invocation_metadata() or () if k == NAMESPACE_METADATA), ""
    )
    if not value:
        raise _Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{NAMESPACE_METADATA}: namespace is required (set the gRPC metadata key "
            f"{NAMESPACE_METADATA!r})",
        )
    try:
        return validate_namespace(str(value), NAMESPACE_METADATA)
    except BroadcasterError as exc:
        raise _reject_core(exc, {}) from None


def _check_forwarded(request: events_pb2.ForwardRequest) -> None:
    """containerd's exchange.validateEnvelope: valid namespace and topic, timestamp set."""
    if not request.HasField("envelope"):
        raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, "envelope: is required")
    env = request.envelope
    try:
        validate_namespace(env.namespace, "envelope.namespace")
        validate_topic(env.topic, "envelope.topic")
    except InvalidArgument as exc:
        raise _reject_core(exc, {}) from None
    ts = env.timestamp
    if not env.HasField("timestamp") or (ts.seconds, ts.nanos) == (MIN_SECONDS, 0):
        raise _Reject(grpc.StatusCode.INVALID_ARGUMENT,
                      "envelope.timestamp: must be set on a forwarded event")
    try:
        check_timestamp(ts.seconds, ts.nanos, "envelope.timestamp")
    except InvalidArgument as exc:
        raise _reject_core(exc, {}) from None


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
    _add(server, EVENTS_SERVICE, {
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
    _add(server, INTROSPECTION_SERVICE, {
        "Server": grpc.unary_unary_rpc_method_handler(
            intro.Server,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=introspection_pb2.ServerResponse.SerializeToString,
        ),
    })
    return [EVENTS_SERVICE, INTROSPECTION_SERVICE]


def _add(
    server: grpc.aio.Server, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


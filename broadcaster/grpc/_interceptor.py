"""The interceptor around every RPC handler (ours, containerd's, health, reflection).

For every call it

* answers a request message that cannot be parsed with ``INVALID_ARGUMENT`` naming the
  method (gRPC itself would answer ``UNKNOWN`` with an internal exception text): the
  handler's deserializer is wrapped so that it never raises;
* bounds the RPCs one client address keeps open (``max_rpcs_per_peer``; TCP only);
* answers an :class:`RpcError` raised by its own checks or escaping the handler (from a
  task group, too) with its status, as the handlers answer theirs (:mod:`._errors`);
* counts open streams and finished RPCs by method and code (:class:`Telemetry`);
* logs failed RPCs, at most one line per method and code per interval.

Wrapped handlers are built once per method and reused.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from .._auth import AccessDenied, LimitExceeded, ListenerSecurity, Unauthenticated
from ._caller import CALLER, STREAMS_NOT_COUNTED, Caller, authenticate
from ._errors import RpcError, abort, rpc_error
from ._peers import PeerLimiter, peer_address
from ._ratelog import RateLimitedLog
from ._security import Security
from ._telemetry import Telemetry

__all__ = ["MalformedRequest", "ServerInterceptor"]

logger = logging.getLogger("broadcaster.grpc.access")

_Context = grpc.aio.ServicerContext[Any, Any]
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class _Unparsed:
    """What the wrapped deserializer returns for bytes that are not a valid message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class MalformedRequest(RpcError):
    """Raised from a request iterator in place of a message that could not be parsed:
    ``INVALID_ARGUMENT`` naming the method."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message, "malformed_request")


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises
            return _Unparsed(str(exc) or type(exc).__name__)
    return deserialize


def _unparsed_message(method: str, unparsed: _Unparsed) -> str:
    return f"{method}: the request message could not be parsed ({unparsed.reason})"


def _find_rpc_error(exc: BaseException) -> RpcError | None:
    """*exc* if it is an RpcError, or the first one inside an exception group."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_rpc_error(inner)
            if found is not None:
                return found
    return None


def _code_of(context: _Context, exc: BaseException | None) -> str:
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):
        return "CANCELLED"
    code = context.code()
    if code is None:
        return "UNKNOWN" if exc is not None else "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Parse errors, per-address RPC bounds, figures and the failed-RPC log.

    :param telemetry: where streams, requests and rejections are counted
    :param peers: the per-address bound, or None for none (unix sockets)
    :param error_log: where failed RPCs are logged (rate-limited)
    :param security: who calls and what it may do (None: nothing checked, no identity)
    :param listener: how the listeners of this server authenticate callers
    :param unix: whether they are unix sockets (callers without credentials: ``local``)
    """

    def __init__(self, telemetry: Telemetry, *, peers: PeerLimiter | None = None,
                 error_log: RateLimitedLog | None = None, security: Security | None = None,
                 listener: ListenerSecurity | None = None, unix: bool = False) -> None:
        self._telemetry = telemetry
        self._security = security
        self._listener = listener or ListenerSecurity()
        self._unix = unix
        self._peers = peers
        self._error_log = error_log or RateLimitedLog(logger, 10.0)
        self._cache: dict[str, tuple[grpc.RpcMethodHandler[Any, Any],
                                     grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap_handler(handler, method)
        if len(self._cache) < 1024:  # registered methods only reach here: a fixed set
            self._cache[method] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, handler: Any, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        kind = next(k for k in _KINDS if getattr(handler, k) is not None)
        behavior = getattr(handler, kind)
        changes: dict[str, Any] = {kind: self._wrap(behavior, method, handler)}
        if handler.request_deserializer is not None:
            changes["request_deserializer"] = _tolerant(handler.request_deserializer)
        wrapped: grpc.RpcMethodHandler[Any, Any] = handler._replace(**changes)
        return wrapped

    def _wrap(self, behavior: Callable[..., Any], method: str, handler: Any) -> Any:
        telemetry, peers, error_log = self._telemetry, self._peers, self._error_log
        streaming = handler.request_streaming or handler.response_streaming
        request_streaming = handler.request_streaming
        security, listener, unix = self._security, self._listener, self._unix
        counted = streaming and not method.startswith(STREAMS_NOT_COUNTED)

        async def identify(context: _Context) -> Caller | None:
            """Who calls (the call's :data:`CALLER`); its stream counted if streaming."""
            if security is None:
                return None
            try:
                caller = authenticate(
                    security, listener, method, unix=unix, auth_context=context.auth_context(),
                    metadata=context.invocation_metadata(), peer=context.peer())
                if counted:
                    security.limits.open_stream(caller.identity)
            except Unauthenticated as exc:
                await abort(context, RpcError(grpc.StatusCode.UNAUTHENTICATED, str(exc),
                                              "unauthenticated"), telemetry.reject)
            except (AccessDenied, LimitExceeded) as exc:
                await abort(context, rpc_error(exc), telemetry.reject)
            CALLER.set(caller)
            return caller

        async def admit(context: _Context) -> tuple[str | None, Caller | None]:
            """Count the call (and its client address, if bounded) and identify its
            caller: returned, to release."""
            if streaming:
                telemetry.open_streams[method] += 1
            caller = await identify(context)
            if peers is None:
                return None, caller
            address = peer_address(context.peer())
            if not peers.acquire(address):
                release(None, caller)
                await abort(context, RpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{method}: {address} has {peers.limit} RPCs open, the most one client "
                    "address may (max_rpcs_per_peer)", "peer_rpc_limit"), telemetry.reject)
            return address, caller

        def release(address: str | None, caller: Caller | None) -> None:
            if address is not None:
                peers.release(address)  # type: ignore[union-attr]
            if caller is not None and counted:
                caller.security.limits.close_stream(caller.identity)

        async def parsed(request: Any, context: _Context) -> Any:
            """The request for the handler: checked if unary, checked as it is read if
            streamed."""
            if request_streaming:
                return _checked(request, method)
            if type(request) is _Unparsed:
                await abort(context, MalformedRequest(_unparsed_message(method, request)),
                            telemetry.reject)
            return request

        def leave(context: _Context, exc: BaseException | None,
                  held: tuple[str | None, Caller | None]) -> None:
            release(*held)
            if streaming:
                telemetry.open_streams[method] -= 1
                if not telemetry.open_streams[method]:
                    del telemetry.open_streams[method]
            code = _code_of(context, exc)
            telemetry.requests[(method, code)] += 1
            if code not in ("OK", "CANCELLED"):
                error_log.log(logging.INFO, (method, code),
                              "rpc failed method=%s code=%s", method, code)

        async def answer(context: _Context, exc: Exception) -> None:
            found = _find_rpc_error(exc)
            if found is None:
                raise exc
            await abort(context, found, telemetry.reject)

        if inspect.isasyncgenfunction(behavior):
            async def gen_wrapper(request: Any, context: _Context) -> AsyncIterator[Any]:
                held: tuple[str | None, Caller | None] = (None, None)
                exc: BaseException | None = None
                try:
                    held = await admit(context)
                    request = await parsed(request, context)
                    try:
                        async for response in behavior(request, context):
                            yield response
                    except Exception as e:
                        await answer(context, e)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    leave(context, exc, held)
            return gen_wrapper

        if not inspect.iscoroutinefunction(behavior):
            return behavior  # a sync handler (not used here): left as it is

        async def wrapper(request: Any, context: _Context) -> Any:
            held: tuple[str | None, Caller | None] = (None, None)
            exc: BaseException | None = None
            try:
                held = await admit(context)
                request = await parsed(request, context)
                try:
                    return await behavior(request, context)
                except Exception as e:
                    await answer(context, e)
            except BaseException as e:
                exc = e
                raise
            finally:
                leave(context, exc, held)
        return wrapper


async def _checked(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    async for request in requests:
        if type(request) is _Unparsed:
            raise MalformedRequest(_unparsed_message(method, request))
        yield request

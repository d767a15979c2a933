"""Server figures: open streams, requests by method and code, rejections by reason.

A server interceptor wraps every RPC handler (ours, containerd's, health, reflection),
so the counts cover all services. The figures are exported as Prometheus metrics through
the ``extra`` hook of :func:`broadcaster._metrics.register_metrics`.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Telemetry", "TelemetryInterceptor"]

logger = logging.getLogger("broadcaster.grpc.access")


class Telemetry:
    """Counters of one server (plain ints, read on the event loop's thread)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.open_streams: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()

    @property
    def streams(self) -> int:
        return sum(self.open_streams.values())

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def metrics(self) -> Iterator[Metric]:
        """Metric families of these figures (the ``extra`` hook)."""
        streams = GaugeMetricFamily(
            "broadcaster_grpc_streams_open", "Open streaming RPCs, by method.",
            labels=["method"])
        for method, count in sorted(self.open_streams.items()):
            streams.add_metric([method], count)
        requests = CounterMetricFamily(
            "broadcaster_grpc_requests", "Finished RPCs, by method and status code.",
            labels=["method", "code"])
        for (method, code), count in sorted(self.requests.items()):
            requests.add_metric([method, code], count)
        rejected = CounterMetricFamily(
            "broadcaster_grpc_rejected", "Rejected requests and sub-requests, by reason.",
            labels=["reason"])
        for reason, count in sorted(self.rejected.items()):
            rejected.add_metric([reason], count)
        yield from (streams, requests, rejected)
        yield GaugeMetricFamily(
            "broadcaster_uptime_seconds", "Seconds since the server started.",
            value=self.uptime())


def _code_of(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> str:
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


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC and every open stream into *telemetry*."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        streaming = handler.request_streaming or handler.response_streaming
        if handler.unary_unary is not None:
            kind, behavior = "unary_unary", handler.unary_unary
        elif handler.unary_stream is not None:
            kind, behavior = "unary_stream", handler.unary_stream
        elif handler.stream_unary is not None:
            kind, behavior = "stream_unary", handler.stream_unary
        else:
            kind, behavior = "stream_stream", handler.stream_stream
        wrapped = self._wrap(behavior, method, streaming)
        return handler._replace(**{kind: wrapped})  # type: ignore[attr-defined, no-any-return]

    def _wrap(self, behavior: Callable[..., Any], method: str, streaming: bool) -> Any:
        telemetry = self._telemetry

        def enter() -> None:
            if streaming:
                telemetry.open_streams[method] += 1

        def leave(context: Any, exc: BaseException | None) -> None:
            if streaming:
                telemetry.open_streams[method] -= 1
                if not telemetry.open_streams[method]:
                    del telemetry.open_streams[method]
            code = _code_of(context, exc)
            telemetry.requests[(method, code)] += 1
            if code not in ("OK", "CANCELLED"):
                logger.info("rpc finished method=%s code=%s", method, code)

        if inspect.isasyncgenfunction(behavior):
            async def gen_wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
                enter()
                exc: BaseException | None = None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    leave(context, exc)
            return gen_wrapper

        if not inspect.iscoroutinefunction(behavior):
            return behavior  # a sync handler (not used here): left uncounted

        async def wrapper(request: Any, context: Any) -> Any:
            enter()
            exc: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as e:
                exc = e
                raise
            finally:
                leave(context, exc)
        return wrapper

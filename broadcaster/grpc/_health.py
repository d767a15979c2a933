"""``grpc.health.v1.Health`` with ``List`` (grpcio-health-checking's asyncio servicer
leaves it unimplemented: each call raised NotImplementedError in a worker thread, logged
a traceback and answered UNIMPLEMENTED)."""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

__all__ = ["Health"]


class Health(HealthServicer):  # type: ignore[misc]
    """Check, Watch and List of every service's status."""

    async def List(self, request: health_pb2.HealthListRequest,
                   context: Any) -> health_pb2.HealthListResponse:
        """The status of every service (``""`` is the server as a whole)."""
        response = health_pb2.HealthListResponse()
        for name, status in self._server_status.items():
            response.statuses[name].status = status
        return response

"""The ``jetstream`` log engine: one NATS JetStream stream per namespace, shared by every
broadcaster node connected to the same NATS (nats-py; asyncio only)."""

from ._log import JetStreamLog
from ._store import JetStreamConfig, JetStreamStore

__all__ = ["JetStreamConfig", "JetStreamLog", "JetStreamStore"]

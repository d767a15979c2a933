"""The servers a client may talk to, one channel each, and which one it uses now.

A client given several addresses (broadcaster nodes sharing one JetStream log) uses one
at a time. When a call to it fails in a way another node could serve (the connection
broke, the node is shutting down or unreachable), the call's owner moves the client on to
the next address with :meth:`Endpoints.failed`, and every stream reconnects there,
resuming exactly (sequences and epochs are the same on every node of one log).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc
import grpc.aio

from ._errors import ClientClosedError, InvalidArgumentError

__all__ = ["Endpoints", "new_id_prefix", "targets_of"]


def targets_of(address: str | Sequence[str]) -> tuple[str, ...]:
    """The addresses of ``Client(address)``: one, or several."""
    if isinstance(address, str):
        return (address,)
    addresses = tuple(address)
    if not addresses:
        raise InvalidArgumentError("address", "needs at least one address")
    for i, one in enumerate(addresses):
        if not isinstance(one, str) or not one:
            raise InvalidArgumentError(f"address[{i}]", "must be a non-empty string")
    return addresses


def new_id_prefix() -> str:
    """A random prefix for the event ids one client or publisher makes (64 bits)."""
    return os.urandom(8).hex()


class Endpoints:
    """Channels to each target (created on first use) and the index of the current one.

    :param targets: gRPC targets (``HOST:PORT``, ``unix:PATH``)
    :param options: channel options of every channel
    :param credentials: TLS credentials of every channel (None: plaintext)
    """

    def __init__(self, targets: Sequence[str], options: Sequence[tuple[str, str | int]],
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self.targets = tuple(targets)
        self._options = list(options)
        self._credentials = credentials
        self._channels: dict[int, grpc.aio.Channel] = {}
        self.index = 0
        self.failovers = 0
        self._closed = False

    @property
    def several(self) -> bool:
        return len(self.targets) > 1

    def channel(self) -> tuple[int, grpc.aio.Channel]:
        """The current endpoint's index and channel."""
        if self._closed:
            raise ClientClosedError("client: closed")
        index = self.index
        channel = self._channels.get(index)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(self.targets[index], self._credentials,
                                                  options=self._options)
            else:
                channel = grpc.aio.insecure_channel(self.targets[index], options=self._options)
            self._channels[index] = channel
        return index, channel

    def failed(self, index: int) -> None:
        """A call to endpoint *index* failed as a broken node does: move on to the next
        one (unless another call already did)."""
        if index == self.index and len(self.targets) > 1:
            self.index = (index + 1) % len(self.targets)
            self.failovers += 1

    async def close(self) -> None:
        self._closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            await channel.close()

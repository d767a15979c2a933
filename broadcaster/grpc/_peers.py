"""Open RPCs per client address, bounded.

gRPC core hands the application calls, not connections: an application cannot see,
count or close a connection that carries no RPC. What it can bound per client is the
RPCs that client keeps open (its subscriptions, its publish streams and unary calls in
flight) across all its connections; connections without RPCs are bounded by the
connection quota and closed by the idle timeout instead.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["PeerLimiter", "peer_address"]


def peer_address(peer: str) -> str:
    """The client's address without its port: ``ipv4:10.0.0.7:51234`` ->
    ``ipv4:10.0.0.7``, ``ipv6:[::1]:5000`` -> ``ipv6:[::1]``; anything else unchanged."""
    kind, sep, rest = peer.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        host, colon, port = rest.rpartition(":")
        if colon and port.isdigit():
            return f"{kind}:{host}"
    return peer


class PeerLimiter:
    """Counts the open RPCs of each client address.

    :param limit: RPCs open at once per address
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        """Count one more RPC of *address*, unless it has ``limit`` open already."""
        if self._open[address] >= self.limit:  # (reading a Counter adds no key)
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        """One RPC of *address* ended."""
        left = self._open[address] - 1
        if left > 0:
            self._open[address] = left
        else:
            del self._open[address]

    def open_rpcs(self, address: str) -> int:
        return self._open.get(address, 0)

    @property
    def addresses(self) -> int:
        """Addresses with at least one RPC open."""
        return len(self._open)

"""The open-file limit (RLIMIT_NOFILE) and the connections that fit under it.

Every connection costs a file descriptor. A server at its descriptor limit cannot
accept anything (gRPC logs "File descriptor limit reached" and retries every second),
not even on its unix socket, and cannot open a file. So ``broadcaster serve`` raises the
soft limit to the hard one at start, and the TCP connection quota is fitted under the
limit with a reserve of descriptors for the unix sockets, the metrics endpoint and the
process itself.
"""

from __future__ import annotations

import resource

__all__ = ["fit_connections", "open_files_limit", "raise_open_files_limit"]


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> tuple[int, int, str | None]:
    """Raise the soft RLIMIT_NOFILE to the hard limit.

    :returns: the soft limit before, the soft limit now, and why it could not be raised
        (None if it was raised or already at the hard limit)
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft, None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. hard unlimited but the kernel caps it
        return soft, soft, str(exc)
    return soft, hard, None


def fit_connections(configured: int | None, tcp_addresses: int, reserved_fds: int,
                    fd_limit: int | None) -> int | None:
    """The connection quota per TCP address: *configured*, lowered so that
    ``quota * tcp_addresses + reserve <= fd_limit``, where the reserve is *reserved_fds*
    but at most half the limit.

    :param configured: ``max_connections`` (None: no quota unless the limit imposes one)
    :param tcp_addresses: TCP addresses that share the descriptors
    :param reserved_fds: descriptors kept for everything else
    :param fd_limit: the soft RLIMIT_NOFILE (None: unlimited)
    """
    if fd_limit is None or tcp_addresses == 0:
        return configured
    reserve = min(reserved_fds, fd_limit // 2)
    fitting = max(1, (fd_limit - reserve) // tcp_addresses)
    return fitting if configured is None else min(configured, fitting)

"""Unix sockets created with the permissions asked for, never wider for a moment.

gRPC creates a unix socket file when the port is added, with the process's umask. The
umask is narrowed to the owner's bits of *mode* around that call (so the file is never
more open than asked), then the group is set, then the mode. Who may connect is
decided by these: the socket's peers are the identity ``local``.
"""

from __future__ import annotations

import grp
import os
import threading

import grpc

__all__ = ["add_unix_port", "socket_path"]

_UMASK_LOCK = threading.Lock()  # the umask is the process's: one change at a time


def socket_path(address: str) -> str:
    """The file of a ``unix:PATH`` or ``unix:///PATH`` address."""
    path = address[len("unix:"):]
    return path[2:] if path.startswith("//") else path


def _gid(group: str | int) -> int:
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(f"security.socket_group: no group named {group!r}") from None


def add_unix_port(server: grpc.aio.Server, address: str, mode: int,
                  group: str | int | None = None,
                  credentials: grpc.ServerCredentials | None = None) -> int:
    """Add the unix socket *address* to *server* with *mode* and *group*.

    :raises OSError: if the group does not exist or the socket cannot be given it
    :raises RuntimeError: as gRPC does, if the socket cannot be bound
    """
    gid = None if group is None else _gid(group)
    with _UMASK_LOCK:
        old = os.umask(0o777 & ~(mode & 0o700))
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        finally:
            os.umask(old)
    path = socket_path(address)
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except OSError as exc:
            raise OSError(f"security.socket_group: cannot give {path} the group {group!r}: "
                          f"{exc.strerror}") from None
    os.chmod(path, mode)
    return port

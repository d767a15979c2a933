"""Reading grpc.aio's finished operations at the pace they finish.

grpc.aio (grpcio 1.85) hands every finished gRPC operation (a call accepted, a message
read, a write taken, a status sent) to the event loop through one process-wide queue:
a poller thread pushes each operation into the queue and writes one byte into a
socketpair; the loop's reader for that socket reads **one** byte and then takes every
operation queued. A turn of the loop that took 500 operations has read one of their 500
bytes. When operations finish faster than the loop turns (a fan-out of one event to
thousands of streams: a write each), the bytes pile up, the socket's buffer fills
(about 280 one-byte writes on Linux) and the poller thread blocks in ``write``. From then
on the loop receives **one operation per turn**: every other client's new call and
every message read waits behind the backlog in gRPC core, for hundreds of milliseconds,
while the loop itself turns every few milliseconds (measured: a Health check accepted
100-300 ms after it was sent, answered 0.2 ms after it was accepted).

:func:`read_completions_promptly` replaces that reader, on the running loop, with one
that reads every byte waiting but one, then lets grpc's own handler read the last byte
and take the queue as before: the poller thread never waits for the loop, and each turn
receives everything finished so far. What reaches the loop, and in which order, is
unchanged.

The queue, its sockets and its handler are grpc.aio internals (found through the
garbage collector: Cython keeps them out of Python's reach otherwise). With another
grpcio whose internals differ, nothing is replaced and the function says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["read_completions_promptly"]

logger = logging.getLogger(__name__)

#: bytes looked at per call: more than a socketpair holds in one-byte writes (about 280
#: on Linux); any beyond are read in the next turn
_PEEK = 4096


def read_completions_promptly(loop: asyncio.AbstractEventLoop) -> bool:
    """Replace grpc.aio's completion-queue reader on *loop* (module docstring); return
    whether it was replaced. Call it once grpc.aio serves on *loop* (after a server's
    ``start()``); calling it again is harmless."""
    readers = list(_readers(loop))
    registered = _registered(readers)
    if any(map(_is_ours, readers)) and not registered:
        return True  # replaced already
    found = _find_queue(loop, registered)
    if found is None:
        logger.info("grpc.aio completion queue reader left as it is: its internals were "
                    "not recognised (grpcio changed)")
        return False
    read, write, handle_events = found
    loop.add_reader(read, _reader(loop, read, write, handle_events))
    return True


def _reader(loop: asyncio.AbstractEventLoop, read: socket.socket, write: socket.socket,
            handle_events: Callable[[Any], None]) -> Callable[[], None]:
    """The reader callback: every wake-up byte but one read here, the last by grpc's
    handler, which then takes every queued operation.

    A byte is written after its operation is queued, so every byte read here belongs to
    an operation the handler takes in the same call; an operation queued after that
    leaves its byte unread and the loop calls the reader again.
    """

    def read_completions() -> None:
        try:
            waiting = len(read.recv(_PEEK, socket.MSG_PEEK))
        except BlockingIOError:  # read by another loop's reader already
            return
        if waiting > 1:
            read.recv(waiting - 1)
        try:
            handle_events(loop)
        except BaseException:
            # the handler stopped before the queue was empty and no byte is left to say
            # so: leave one, so that the rest is read in the next turn
            with contextlib.suppress(BlockingIOError):  # full: bytes enough wait
                write.send(b"1", socket.MSG_DONTWAIT)
            raise

    return read_completions


def _queue_kind() -> type | None:
    """grpc.aio's completion-queue class, if this grpcio has it."""
    try:
        cygrpc = importlib.import_module("grpc._cython.cygrpc")
    except ImportError:  # pragma: no cover - grpcio is a dependency
        return None
    kind = getattr(cygrpc, "PollerCompletionQueue", None)
    return kind if isinstance(kind, type) else None


def _registered(readers: list[Any]) -> list[Any]:
    """The completion queues whose reader is among a loop's *readers* (grpc registers
    ``partial(queue._handle_events, loop)``)."""
    kind = _queue_kind()
    return [] if kind is None else [q for q in map(_queue_of, readers) if type(q) is kind]


def _find_queue(loop: asyncio.AbstractEventLoop, registered: list[Any] | None = None
                ) -> tuple[socket.socket, socket.socket, Callable[[Any], None]] | None:
    """grpc.aio's completion queue bound to *loop*: its read and write sockets and its
    event handler, or None if grpc's internals are not the expected ones. Found among
    the queues whose reader *loop* holds (*registered*, from :func:`_registered`; read
    from the loop if None) without walking every object, as the garbage collector does,
    on loops that show their readers (asyncio's selector loops; not uvloop)."""
    kind = _queue_kind()
    if kind is None:
        return None
    if registered is None:
        registered = _registered(list(_readers(loop)))
    found = []
    for queue in registered or gc.get_objects():
        if type(queue) is not kind:
            continue
        parts = gc.get_referents(queue)
        sockets = [p for p in parts if isinstance(p, socket.socket) and p.fileno() != -1]
        bound = any(isinstance(p, dict) and loop in p for p in parts)
        read = [s for s in sockets if not s.getblocking()]
        write = [s for s in sockets if s.getblocking()]
        handle_events = getattr(queue, "_handle_events", None)
        if bound and len(read) == 1 and len(write) == 1 and callable(handle_events):
            found.append((read[0], write[0], handle_events))
    return found[0] if len(found) == 1 else None


def _queue_of(callback: object) -> object:
    """The object whose method *callback* partially applies, if it does."""
    return getattr(getattr(callback, "func", None), "__self__", None)


def _readers(loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """The reader callbacks of an asyncio selector loop (nothing for other loops)."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return
    for key in selector.get_map().values():
        if isinstance(key.data, tuple) and key.data[0] is not None:
            yield getattr(key.data[0], "_callback", None)


def _is_ours(callback: object) -> bool:
    return (getattr(callback, "__module__", None) == __name__
            and getattr(callback, "__name__", None) == "read_completions")

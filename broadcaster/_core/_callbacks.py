"""In-process callbacks, safe against re-entrant registration and watched for stalls.

The runtime this project replaces called every exit callback under the lock that
registration takes, so a callback that registered another deadlocked the exit path.
Here every callback has its own subscription and task: registering or removing a
callback, even from inside one, touches no lock and never waits. A watchdog reports
callbacks that run longer than ``callback_timeout``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from ._config import HubConfig
from ._durable import LogUnavailable, StorageError
from ._errors import BroadcasterError
from ._subscription import Subscription
from ._types import Heartbeat, Item

__all__ = ["Callback", "CallbackHandle", "CallbackRunner", "Host"]

logger = logging.getLogger("broadcaster.callbacks")

Callback = Callable[[Item], Awaitable[None] | None]


class Host(Protocol):
    """The hub, as its callbacks' runner sees it."""

    @property
    def task_group(self) -> TaskGroup:
        """Where callbacks run (raises ``anyio.ClosedResourceError`` once closed)."""
        ...

    @property
    def config(self) -> HubConfig: ...

    def needs_prepare(self, sub: Subscription) -> bool:
        """Whether *sub* names a namespace whose durable log is not open yet."""
        ...

    def check_subscription(self, sub: Subscription) -> None:
        """Check *sub* as registering it would, creating nothing."""
        ...

    async def prepare(self, sub: Subscription) -> None:
        """Open the durable logs *sub* needs before it registers."""
        ...


class CallbackHandle:
    """A registered callback; :meth:`remove` unregisters it (safe from any task)."""

    def __init__(self, runner: CallbackRunner, sub: Subscription, callback: Callback,
                 thread: bool, name: str) -> None:
        self._runner = runner
        self.subscription = sub
        self.callback = callback
        self.thread = thread
        self.name = name
        self.scope = anyio.CancelScope()

    def remove(self) -> None:
        """Stop calling the callback. A call in progress is cancelled at its next await."""
        self.scope.cancel()
        self.subscription.close()

    @property
    def active(self) -> bool:
        return not self.scope.cancel_called


@dataclass(slots=True)
class _Running:
    name: str
    started: float
    reported: bool = False


class CallbackRunner:
    """Runs callbacks for a hub and watches them."""

    def __init__(self, hub: Host) -> None:
        self._hub = hub
        self._ids = itertools.count()
        self._running: dict[int, _Running] = {}
        self.count = 0
        self.errors = 0
        self.slow = 0

    def add(self, sub: Subscription, callback: Callback, *, thread: bool,
            name: str | None) -> CallbackHandle:
        hub = self._hub
        tg = hub.task_group  # raises if the hub is closed
        # a durable log not open yet is opened by the callback's task; the subscription
        # then starts where the log stood when it opened, so nothing published after
        # this call is missed
        pending = hub.needs_prepare(sub)
        if pending:
            hub.check_subscription(sub)
        else:
            sub.open()
        label = name or str(getattr(callback, "__qualname__", repr(callback)))
        handle = CallbackHandle(self, sub, callback, thread, label)
        self.count += 1
        tg.start_soon(self._run, handle, pending, name=f"callback {handle.name}")
        return handle

    async def _open(self, handle: CallbackHandle) -> bool:
        """Open the durable logs of the callback's namespaces, then its subscription;
        while the store cannot (NATS unreachable), try again with backoff. False if the
        subscription was refused meanwhile (a quota filled up): the callback ends."""
        delay = 0.1
        while True:
            try:
                await self._hub.prepare(handle.subscription)
                handle.subscription.open()
                return True
            except (LogUnavailable, StorageError) as exc:
                logger.warning("callback %s: cannot open its namespaces yet (%s); again in "
                               "%.1f s", handle.name, exc, delay)
            except BroadcasterError as exc:
                self.errors += 1
                logger.error("callback %s could not be registered: %s", handle.name, exc)
                return False
            except (anyio.ClosedResourceError, RuntimeError):
                return False  # the hub closed, or the callback was removed meanwhile
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _run(self, handle: CallbackHandle, pending: bool = False) -> None:
        try:
            with handle.scope:
                if pending and not await self._open(handle):
                    return
                while True:
                    try:
                        batch = await handle.subscription.receive_batch(256)
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        return
                    for item in batch:
                        if not isinstance(item, Heartbeat):
                            await self._call(handle, item)
        finally:
            handle.subscription.close()
            self.count -= 1

    async def _call(self, handle: CallbackHandle, item: Item) -> None:
        key = next(self._ids)
        self._running[key] = _Running(handle.name, anyio.current_time())
        try:
            if handle.thread:
                result = await anyio.to_thread.run_sync(handle.callback, item)
            else:
                result = handle.callback(item)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.errors += 1
            logger.exception("callback %s raised; it stays registered", handle.name)
        finally:
            del self._running[key]

    async def watchdog(self) -> None:
        """Report every call that has run longer than the hub's ``callback_timeout``."""
        timeout = self._hub.config.callback_timeout
        while True:
            await anyio.sleep(timeout / 4)
            now = anyio.current_time()
            for running in self._running.values():
                if not running.reported and now - running.started >= timeout:
                    running.reported = True
                    self.slow += 1
                    logger.warning(
                        "callback %s has been running for %.1f s (threshold %.1f s)",
                        running.name, now - running.started, timeout,
                    )

    def running(self) -> list[tuple[str, float]]:
        """Names and start times of the calls in progress."""
        return [(r.name, r.started) for r in self._running.values()]

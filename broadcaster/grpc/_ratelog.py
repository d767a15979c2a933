"""Log lines that a client can trigger at will, at most one per key and interval.

A client that fails RPCs in a loop (or a ``ctr events`` that keeps falling behind) must
not flood the server's log (containerd #11108: discarded-event warnings filled disks).
Each key (for instance a method and a status code) logs its first line at once, then at
most one line per interval, which carries the count of lines left out since the last
one::

    rpc failed method=/broadcaster.v1.Broadcaster/Publish code=INVALID_ARGUMENT
        suppressed=4711
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Rate-limits lines per key.

    :param logger: where lines go
    :param interval: seconds between two lines of one key
    :param clock: monotonic seconds (injectable for tests)
    :param max_keys: keys remembered; the least recently logged is forgotten beyond it
    """

    def __init__(self, logger: logging.Logger, interval: float, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 4096) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        # key -> [time of the last line, lines suppressed since]
        self._keys: OrderedDict[Hashable, list[float]] = OrderedDict()

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Log ``message % args`` (with `` suppressed=N`` when lines were left out)
        unless *key* logged less than ``interval`` ago; return whether it was logged."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        state = self._keys.get(key)
        if state is not None and now - state[0] < self._interval:
            state[1] += 1
            return False
        suppressed = int(state[1]) if state is not None else 0
        self._keys[key] = [now, 0]
        self._keys.move_to_end(key)
        if len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        if suppressed:
            message += " suppressed=%d"
            args = (*args, suppressed)
        self._logger.log(level, message, *args)
        return True

"""Files the server reloads without a restart: on SIGHUP, and when they change.

A change is a new (device, inode, size, modification time) of the file: an editor that
writes a new file and renames it over the old one, and one that rewrites it in place,
are both seen at the next check. A file that fails to load is refused: the value loaded
before stays in force and the error is logged (once per version of the file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Generic, TypeVar

from .._core._errors import BroadcasterError

__all__ = ["Reloadable", "file_signature"]

logger = logging.getLogger("broadcaster.security")

T = TypeVar("T")

Signature = tuple[int, int, int, int] | None


def file_signature(path: str) -> Signature:
    """What changes when the file at *path* changes (None: it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Reloadable(Generic[T]):
    """The value loaded from one file, reloaded when asked or when the file changed.

    :param path: the file
    :param load: reads and parses it; raises :class:`BroadcasterError` (naming the key
        or line) or :class:`OSError` on a bad file
    :param what: what the file is, for log lines (``policy``, ``tokens``)
    :raises BroadcasterError, OSError: if the file cannot be loaded at start
    """

    def __init__(self, path: str, load: Callable[[str], T], what: str) -> None:
        self.path = path
        self._load = load
        self.what = what
        self._signature = file_signature(path)
        self.value: T = load(path)
        self._refused: list[Signature] = []  # the signature of the version refused
        #: successful reloads, and reloads refused (the old value kept)
        self.reloads = 0
        self.failures = 0
        self._listeners: list[Callable[[T], None]] = []

    def on_reload(self, listener: Callable[[T], None]) -> None:
        """Call *listener* with the new value after each successful reload."""
        self._listeners.append(listener)

    def changed(self) -> bool:
        """Whether the file changed since it was last loaded (or refused)."""
        signature = file_signature(self.path)
        return signature != self._signature and [signature] != self._refused

    def check(self) -> bool:
        """Reload if the file changed; return whether a new value is in force."""
        return self.changed() and self.reload(asked=False)

    def reload(self, *, asked: bool = True) -> bool:
        """Load the file again; on error keep the value in force and log why (when
        *asked*, as on SIGHUP; else once per version of the file).

        :returns: whether the new value is in force
        """
        signature = file_signature(self.path)
        try:
            value = self._load(self.path)
        except (BroadcasterError, OSError) as exc:
            self.failures += 1
            if asked or [signature] != self._refused:
                logger.error("%s file refused, the previous one stays in force path=%s "
                             "error=%r", self.what, self.path, str(exc))
            self._refused = [signature]
            return False
        self.value = value
        self._signature = signature
        self._refused = []
        self.reloads += 1
        logger.info("%s file reloaded path=%s", self.what, self.path)
        for listener in self._listeners:
            listener(value)
        return True

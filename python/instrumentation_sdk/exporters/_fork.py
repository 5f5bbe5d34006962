"""A lock a forked child gets fresh.

A child inherits every lock in the state it was at the fork: one held by the parent's flusher
thread, which does not exist in the child, would never be released there.
"""

from __future__ import annotations

import os
import threading

__all__ = ["ProcessLock"]


class ProcessLock:
    """``threading.Lock`` per process: ``with lock.here():`` or ``lock.here()`` for the lock."""

    __slots__ = ("_lock", "_pid")

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def here(self) -> threading.Lock:
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._pid = os.getpid()
        return self._lock

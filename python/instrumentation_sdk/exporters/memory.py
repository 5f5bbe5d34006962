"""``InMemoryExporter``: keeps exported spans in a list, for tests."""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["InMemoryExporter"]


class InMemoryExporter:
    """Collects every exported record in ``spans`` (oldest first).

    >>> from instrumentation_sdk import configure, llm_span, flush
    >>> exporter = InMemoryExporter()
    >>> configure(exporter=exporter)
    >>> with llm_span("gpt-4o") as span:
    ...     span.set_metadata("completion_tokens", 7)
    >>> flush()
    True
    >>> exporter.spans[-1]["metadata"]["completion_tokens"]
    7
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._changed = threading.Condition(threading.Lock())
        self._spans: list[dict[str, Any]] = []
        self.batches = 0

    @property
    def _lock(self) -> threading.Condition:
        # A forked child gets a fresh lock (an inherited one may be held by a vanished thread).
        if self._pid != os.getpid():
            self._changed = threading.Condition(threading.Lock())
            self._pid = os.getpid()
        return self._changed

    @property
    def spans(self) -> list[dict[str, Any]]:
        """A snapshot of the records exported so far."""
        with self._lock:
            return list(self._spans)

    def export(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self._spans.extend(batch)
            self.batches += 1
            self._lock.notify_all()

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._spans.clear()
            self.batches = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` records arrived; False on timeout."""
        changed = self._lock
        with changed:
            return changed.wait_for(lambda: len(self._spans) >= count, timeout)

    def shutdown(self) -> None:
        """Nothing to release."""

"""``JsonlExporter``: one JSON object per line, appended to a file.

Safe for several processes appending to one file: each batch is written with one ``write`` on a
descriptor opened with ``O_APPEND``, under an exclusive ``flock`` on POSIX, so lines from
different processes never interleave. The file is reopened in a forked child (a shared
descriptor would share the lock).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from ._fork import ProcessLock

__all__ = ["JsonlExporter"]

try:
    import fcntl
except ImportError:  # Windows: O_APPEND alone
    fcntl = None  # type: ignore[assignment]


class JsonlExporter:
    """Append each exported span to ``path`` as one line of JSON.

    >>> exporter = JsonlExporter("spans.jsonl")  # doctest: +SKIP
    >>> configure(exporter=exporter)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._encoder = msgspec.json.Encoder()
        self._lock = ProcessLock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o644)
            self._pid = os.getpid()
        return self._fd

    def export(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        lines = bytearray()
        for record in batch:
            self._encoder.encode_into(record, lines, -1)
            lines += b"\n"
        self.export_jsonl(bytes(lines))

    def export_jsonl(self, lines: bytes) -> None:
        """Append records already encoded as JSON Lines (the pipeline's fast path: the core
        encodes a batch without the interpreter)."""
        if not lines:
            return
        with self._lock.here():
            fd = self._descriptor()
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                view = memoryview(lines)
                while view:  # a short write (signal, quota) continues where it stopped
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def shutdown(self) -> None:
        with self._lock.here():
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

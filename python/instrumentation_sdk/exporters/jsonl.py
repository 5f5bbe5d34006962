"""``JsonlExporter``: one JSON object per line, appended to a file.

Safe for several processes appending to one file: the Rust core writes each batch on a file
opened for appending, under an exclusive advisory lock (``flock`` on POSIX, ``LockFileEx`` on
Windows), so lines from different processes never interleave; a forked child reopens the file.
A write that fails part way is cut back to the file's length before the batch, so a retry
appends the batch whole, once; a file deleted or replaced meanwhile is noticed (device and
inode, per batch) and reopened. It declares the ``"jsonl"`` export format and hands the pipeline its
``jsonl_file``, so the core drains, processes, encodes and appends whole batches without the
interpreter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from .._core import JsonlFile

__all__ = ["JsonlExporter"]


class JsonlExporter:
    """Append each exported span to ``path`` as one line of JSON.

    >>> exporter = JsonlExporter("spans.jsonl")  # doctest: +SKIP
    >>> configure(exporter=exporter)  # doctest: +SKIP
    """

    export_format: Literal["jsonl"] = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: The core's writer; the pipeline appends batches to it directly.
        self.jsonl_file: JsonlFile | None = JsonlFile(self.path)
        self._encoder = msgspec.json.Encoder()

    def export(self, batch: list[dict[str, Any]]) -> None:
        """Append records (dicts) as JSON Lines (for use outside the pipeline)."""
        if not batch:
            return
        lines = bytearray()
        for record in batch:
            self._encoder.encode_into(record, lines, -1)
            lines += b"\n"
        self.export_jsonl(bytes(lines))

    def export_jsonl(self, lines: bytes) -> None:
        """Append records already encoded as JSON Lines."""
        assert self.jsonl_file is not None
        self.jsonl_file.append(lines)

    def shutdown(self) -> None:
        """Close the file (a later export reopens it)."""
        if self.jsonl_file is not None:
            self.jsonl_file.close()

"""``ConsoleExporter``: one readable line per span, for development."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from ._fork import ProcessLock

__all__ = ["ConsoleExporter", "format_span"]


def format_span(record: dict[str, Any]) -> str:
    """One line: time, status, name, model, provider, duration, tokens, ids, error.

    >>> line = format_span({"start_time_unix_nano": 0, "end_time_unix_nano": 1_500_000,
    ...     "status": "ok", "name": "llm", "model": "gpt-4o", "provider": "openai",
    ...     "trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": None,
    ...     "error_type": None, "error_message": None,
    ...     "metadata": {"prompt_tokens": 12, "completion_tokens": 40}})
    >>> line.split(" trace=")[0]
    '1970-01-01T00:00:00.000Z ok    llm gpt-4o openai 1.5ms prompt=12 completion=40'
    """
    start = datetime.fromtimestamp(record["start_time_unix_nano"] / 1e9, UTC)
    millis = (record["end_time_unix_nano"] - record["start_time_unix_nano"]) / 1e6
    parts = [
        start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z",
        f"{record['status']:<5}",
        _one_line(record["name"]),
        _one_line(record["model"]),
    ]
    if record.get("provider"):
        parts.append(_one_line(record["provider"]))
    parts.append(f"{millis:.1f}ms")
    metadata = record.get("metadata") or {}
    for key, label in (("prompt_tokens", "prompt"), ("completion_tokens", "completion")):
        if key in metadata:
            parts.append(f"{label}={metadata[key]}")
    parts.append(f"trace={record['trace_id'][:8]}")
    parts.append(f"span={record['span_id'][:8]}")
    if record.get("parent_span_id"):
        parts.append(f"parent={record['parent_span_id'][:8]}")
    if record.get("error_type"):
        message = record.get("error_message") or ""
        parts.append(f"error={_one_line(record['error_type'])}: {_one_line(message)}")
    return " ".join(parts)


def _one_line(value: object) -> str:
    """The text with line breaks (and other control characters) escaped: one span, one line."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConsoleExporter:
    """Print each span as one line to ``stream`` (standard error by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = ProcessLock()

    def export(self, batch: list[dict[str, Any]]) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        text = "".join(format_span(record) + "\n" for record in batch)
        with self._lock.here():
            stream.write(text)
            stream.flush()

    def shutdown(self) -> None:
        """Leaves the stream open: it belongs to the caller."""

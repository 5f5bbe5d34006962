"""Span processors: what runs on each finished span on the flusher thread, before export.

A processor receives a finished span's record (the dict exporters receive: ``record["model"]``,
``record["metadata"]``, ...) and returns it, possibly changed, or ``None`` to drop it
(sampling, filtering). Configure them with ``configure(processors=[...])``.

The built-in processors here run in the Rust core with the interpreter detached, on the span
data itself, so they cost the export path almost nothing. Any callable taking and returning a
record is a processor too: it runs after the built-in ones and switches the batch to the records
path (each batch is turned into dicts for it, then encoded for the exporter).

A processor that raises fails closed: the span is dropped, never exported unprocessed (a
processor may be a redactor), counted in ``stats()["processor_errors"]``, and the cause logged
once. Spans a processor drops are counted in ``stats()["filtered"]``. Both are part of
``stats()["dropped"]``.

>>> from instrumentation_sdk import configure
>>> from instrumentation_sdk.exporters import InMemoryExporter
>>> def only_errors(record):
...     return record if record["status"] == "error" else None
>>> configure(exporter=InMemoryExporter(), processors=[drop_keys("user_email"), only_errors])
"""

from __future__ import annotations

from ._core import RustProcessor
from .config import Processor

__all__ = ["Processor", "RustProcessor", "drop_keys", "sample"]


def sample(ratio: float) -> RustProcessor:
    """Keep the share ``ratio`` (0.0 to 1.0) of traces. Decided by the trace id, so every span
    of a trace is kept or dropped together, in every process (OpenTelemetry's
    ``TraceIdRatioBased`` rule). Raises ``ValueError`` for a ratio outside [0, 1].

    >>> sample(0.1)
    RustProcessor.sample(0.1)
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise ValueError(f"ratio must be a number from 0.0 to 1.0, got {ratio!r}")
    return RustProcessor.sample(float(ratio))


def drop_keys(*keys: str) -> RustProcessor:
    """Remove these metadata keys (and event attributes of these names) from every span.

    >>> drop_keys("user_email", "raw_response")
    RustProcessor.drop_keys(["user_email", "raw_response"])
    """
    for key in keys:
        if not isinstance(key, str):
            raise ValueError(f"keys must be str, got {type(key).__name__}")
    return RustProcessor.drop_keys(list(keys))

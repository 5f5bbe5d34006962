"""Where finished spans go. An exporter is any object with ``export(batch: list[dict])``
(raising means failure; the batch is retried) and an optional ``shutdown()``, or one that
declares another format the pipeline encodes for it (``instrumentation_sdk.export``)."""

from ..export import (
    Exporter,
    ExportError,
    JsonlBytesExporter,
    OtlpBytesExporter,
    OtlpEncoding,
    RecordsExporter,
)
from .console import ConsoleExporter
from .jsonl import JsonlExporter
from .memory import InMemoryExporter
from .otlp import OtlpExporter
from .sqlite import SqliteExporter, default_db_path

__all__ = [
    "ConsoleExporter",
    "ExportError",
    "Exporter",
    "InMemoryExporter",
    "JsonlBytesExporter",
    "JsonlExporter",
    "OtlpBytesExporter",
    "OtlpEncoding",
    "OtlpExporter",
    "RecordsExporter",
    "SqliteExporter",
    "default_db_path",
]

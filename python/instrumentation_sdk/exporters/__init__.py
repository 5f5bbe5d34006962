"""Where finished spans go. An exporter is any object with ``export(batch: list[dict])``
(raising means failure; the batch is retried) and an optional ``shutdown()``."""

from ..config import ExportError
from .console import ConsoleExporter
from .jsonl import JsonlExporter
from .memory import InMemoryExporter
from .otlp import OtlpExporter
from .sqlite import SqliteExporter, default_db_path

__all__ = [
    "ConsoleExporter",
    "ExportError",
    "InMemoryExporter",
    "JsonlExporter",
    "OtlpExporter",
    "SqliteExporter",
    "default_db_path",
]

"""What an exporter is: the formats the pipeline can hand it, each declared by a ``Protocol``.

The flusher drains a batch, runs the processors, then encodes the batch once, in the format the
exporter declares with its ``export_format`` attribute, and sends it:

=========== ====================================== =============================================
format      the exporter has                       the pipeline calls
=========== ====================================== =============================================
``records`` ``export(batch)`` (the default: any    ``export(list_of_record_dicts)``
            object with ``export`` is one)
``jsonl``   ``export_format = "jsonl"``,           ``export_jsonl(lines: bytes)``, or, when
            ``export_jsonl(lines)``, ``jsonl_file`` ``jsonl_file`` is the core's ``JsonlFile``
                                                   and no Python processor runs, nothing: the
                                                   core appends to the file with the interpreter
                                                   detached
``otlp``    ``export_format = "otlp"``,            ``export_otlp(bodies: list[bytes])``
            ``otlp_encoding``, ``export_otlp``
=========== ====================================== =============================================

Raising from a send means the batch failed: it is retried with backoff (``ExportError`` says how).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from . import _core
from ._core import JsonlFile

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportFormat",
    "Exporter",
    "JsonlBytesExporter",
    "OtlpBytesExporter",
    "OtlpEncoding",
    "RecordsExporter",
    "export_format",
    "record_fields",
]

ExportFormat = Literal["records", "jsonl", "otlp"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("records", "jsonl", "otlp")


class ExportError(Exception):
    """Raised by an exporter to say how its failure should be retried.

    ``retryable=False`` drops the batch at once (counted in ``stats()["export_rejected"]``);
    ``retry_after`` (seconds, e.g. from an HTTP ``Retry-After``) is the least wait before the
    next attempt. Any other exception is retried with the usual backoff.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class RecordsExporter(Protocol):
    """Receives each batch as records: dicts with the keys of ``record_fields()``."""

    def export(self, batch: list[dict[str, Any]]) -> None: ...


@runtime_checkable
class JsonlBytesExporter(Protocol):
    """Receives each batch as JSON Lines bytes (one record per line), encoded by the core."""

    export_format: Literal["jsonl"]
    #: The core's appender for the exporter's file, or ``None``: with one, the pipeline appends
    #: batches itself without the interpreter (unless a Python processor runs).
    jsonl_file: JsonlFile | None

    def export_jsonl(self, lines: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class OtlpEncoding:
    """How an OTLP exporter wants its batches encoded."""

    protocol: Literal["http/protobuf", "http/json"] = "http/protobuf"
    max_request_bytes: int = 4 * 1024 * 1024
    resource_attributes: tuple[tuple[str, str], ...] = ()
    openinference: bool = False
    #: ``service.name`` from the exporter's resource attributes, used for spans without one
    #: when the pipeline's ``service_name`` is left at its default.
    service_name: str | None = None


@runtime_checkable
class OtlpBytesExporter(Protocol):
    """Receives each batch as OTLP request bodies (uncompressed), each at most
    ``otlp_encoding.max_request_bytes``. ``export_otlp`` removes the bodies it delivered from
    the list, so a retry (given the same list) sends only the rest; it returns how many spans
    the backend rejected in partial successes."""

    export_format: Literal["otlp"]
    otlp_encoding: OtlpEncoding

    def export_otlp(self, bodies: list[bytes]) -> int: ...


Exporter = RecordsExporter | JsonlBytesExporter | OtlpBytesExporter

_SENDS: Final[dict[str, str]] = {
    "records": "export",
    "jsonl": "export_jsonl",
    "otlp": "export_otlp",
}


def export_format(exporter: object) -> ExportFormat:
    """The format ``exporter`` declares (``"records"`` when it declares none). Raises
    ``ValueError`` when the declaration is not one of ``EXPORT_FORMATS`` or the exporter lacks
    what its format needs."""
    declared = getattr(exporter, "export_format", "records")
    if declared not in EXPORT_FORMATS:
        raise ValueError(
            f"{type(exporter).__name__}.export_format must be one of "
            f"{', '.join(EXPORT_FORMATS)}, got {declared!r}"
        )
    send = _SENDS[declared]
    if not callable(getattr(exporter, send, None)):
        raise ValueError(
            f"{type(exporter).__name__} declares export_format={declared!r} but has no "
            f"{send}() method"
        )
    if declared == "otlp" and not isinstance(
        getattr(exporter, "otlp_encoding", None), OtlpEncoding
    ):
        raise ValueError(
            f"{type(exporter).__name__} declares export_format='otlp' but its otlp_encoding is "
            "not an OtlpEncoding"
        )
    format_: ExportFormat = declared
    return format_


def record_fields() -> list[dict[str, str]]:
    """The record's fields in order, from the core's field table (their only declaration):
    each a dict with ``key``, ``type``, ``otlp`` (the OTLP attribute or ``span.*`` field it maps
    to) and ``column`` (the SQLite store's column).

    >>> [field["key"] for field in record_fields()][-4:]
    ['metadata', 'events', 'prompt', 'completion']
    """
    return [
        {"key": key, "type": type_, "otlp": otlp, "column": column}
        for key, type_, otlp, column in _core.record_fields()
    ]

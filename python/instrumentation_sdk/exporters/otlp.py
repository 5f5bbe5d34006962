"""``OtlpExporter``: spans to any OpenTelemetry backend, over OTLP/HTTP.

The Rust core encodes each batch (``http/protobuf``, the spec's default, or ``http/json``) with
the interpreter detached, split into requests of at most ``max_request_bytes``; this module sends
them from the flusher thread with ``http.client`` (one kept-alive connection per process), gzip
from the standard library, and a deadline per request. Delivery follows the OTLP spec: 429, 502,
503 and 504 and connection failures are retried (honouring ``Retry-After``) within the
pipeline's retry budget; any other status is final; a partial success is logged and counted.

Configured by arguments or the standard variables: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``,
``..._HEADERS``, ``..._PROTOCOL``, ``..._COMPRESSION``, ``..._TIMEOUT`` (milliseconds),
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``; ``INSTRUMENTATION_SDK_OTLP_OPENINFERENCE=1``
adds the OpenInference attribute names (Arize Phoenix).
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from .. import _core
from ..export import ExportError, OtlpEncoding

__all__ = ["OtlpExporter"]

logger = logging.getLogger("instrumentation_sdk")

DEFAULT_ENDPOINT = "http://localhost:4318"
PROTOCOLS = ("http/protobuf", "http/json")
#: Statuses the OTLP spec says to retry; every other failure status is final.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
CONTENT_TYPES = {"http/protobuf": "application/x-protobuf", "http/json": "application/json"}


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>`` (stripped)."""
    for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = environ.get(variable, "").strip()
        if value:
            return value
    return None


def parse_key_values(text: str) -> list[tuple[str, str]]:
    """The W3C Baggage-like lists of ``OTEL_EXPORTER_OTLP_HEADERS`` and
    ``OTEL_RESOURCE_ATTRIBUTES``: ``key=value`` pairs, comma-separated, percent-decoded.

    >>> parse_key_values("api-key=secret, team=a%20b")
    [('api-key', 'secret'), ('team', 'a b')]
    """
    pairs = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        if sep and key:
            pairs.append((key, urllib.parse.unquote(value.strip())))
    return pairs


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OtlpExporter:
    """Export spans to ``{endpoint}/v1/traces`` over OTLP/HTTP. Declares the ``"otlp"`` export
    format: the pipeline hands it request bodies the core encoded.

    >>> from instrumentation_sdk import configure
    >>> configure(exporter=OtlpExporter("http://collector:4318"))  # doctest: +SKIP

    Or, without a line of code: ``INSTRUMENTATION_SDK_EXPORTER=otlp`` and
    ``OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318``.
    """

    export_format: Literal["otlp"] = "otlp"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        compression: str | None = None,
        timeout: float | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        openinference: bool | None = None,
        max_request_bytes: int = 4 * 1024 * 1024,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        if endpoint is not None:
            url = endpoint.rstrip("/") + "/v1/traces"
        elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
            url = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip()  # used as is
        else:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
            url = base.rstrip("/") + "/v1/traces"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OTLP endpoint must be an http(s) URL, got {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

        protocol = protocol or _env(env, "PROTOCOL") or "http/protobuf"
        if protocol == "grpc":
            logger.warning("instrumentation-sdk: OTLP over gRPC is not supported; using HTTP")
            protocol = "http/protobuf"
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"OTLP protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
            )
        self.protocol = protocol

        compression = (compression or _env(env, "COMPRESSION") or "none").lower()
        if compression not in ("gzip", "none"):
            raise ValueError(f"OTLP compression must be 'gzip' or 'none', got {compression!r}")
        self.compression = compression

        if timeout is None:
            raw = _env(env, "TIMEOUT")
            try:
                timeout = float(raw) / 1000.0 if raw else 10.0  # the variable is milliseconds
            except ValueError:
                logger.warning("instrumentation-sdk: ignoring OTEL_EXPORTER_OTLP_TIMEOUT=%r", raw)
                timeout = 10.0
        if not timeout > 0:
            raise ValueError(f"OTLP timeout must be above 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)

        self.headers = dict(parse_key_values(_env(env, "HEADERS") or ""))
        self.headers.update(headers or {})

        resource = parse_key_values(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        resource += list((resource_attributes or {}).items())
        self.resource_attributes = resource
        # OTEL_SERVICE_NAME wins (the pipeline's service_name reads it); else service.name here.
        self._resource_service = dict(resource).get("service.name")

        if openinference is None:
            flag = env.get("INSTRUMENTATION_SDK_OTLP_OPENINFERENCE", "").strip().lower()
            openinference = flag in ("1", "true", "yes", "on")
        self.openinference = openinference
        if max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be at least 1024, got {max_request_bytes}")
        self.max_request_bytes = max_request_bytes
        self._connection: http.client.HTTPConnection | None = None
        self._pid = os.getpid()
        self._encode_value = msgspec.json.Encoder().encode
        #: What the pipeline encodes each batch into for this exporter (``export_otlp``).
        self.otlp_encoding = OtlpEncoding(
            protocol="http/json" if protocol == "http/json" else "http/protobuf",
            max_request_bytes=max_request_bytes,
            resource_attributes=tuple(resource),
            openinference=openinference,
            service_name=self._resource_service,
        )

    # -- the pipeline's side ---------------------------------------------------------------------

    def export_otlp(self, bodies: list[bytes]) -> int:
        """Send request bodies (uncompressed; gzip is applied here when configured), removing
        each from ``bodies`` once delivered, so a retry with the same list sends only the rest.
        Raises ``ExportError`` when a request fails. Returns how many spans the backend
        rejected in partial successes."""
        rejected = 0
        while bodies:
            body = bodies[0]
            if self.compression == "gzip":
                body = gzip.compress(body, compresslevel=6)
            rejected += self._send(body)
            bodies.pop(0)
        return rejected

    def export(self, batch: list[dict[str, Any]]) -> None:
        """Export records (the dicts every exporter receives), for use outside the pipeline or
        from an exporter that hands each batch to several others. Raises ``ExportError`` when
        a request fails, and ``ValueError``/``TypeError`` (naming the record and field) for a
        record that is not one. Values are sent whole: the pipeline bounds them when it builds
        the records."""
        if not batch:
            return
        plan = _core.ExportPlan(
            self._resource_service or "unknown_service", sys.maxsize, sys.maxsize
        )
        encoding = self.otlp_encoding
        bodies, _ = _core.encode_otlp_records(
            batch,
            self._encode_value,
            plan,
            encoding.protocol,
            encoding.max_request_bytes,
            list(encoding.resource_attributes),
            encoding.openinference,
        )
        self.export_otlp(list(bodies))

    def shutdown(self) -> None:
        """Close the kept-alive connection."""
        self._close()

    # -- HTTP ------------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._pid != os.getpid():  # a forked child never shares the parent's socket
            self._connection = None
            self._pid = os.getpid()
        if self._connection is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = cls(self._host, self._port, timeout=timeout)
        return self._connection

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _send(self, body: bytes) -> int:
        deadline = time.monotonic() + self.timeout
        headers = {
            **self.headers,
            "Content-Type": CONTENT_TYPES[self.protocol],
            "User-Agent": f"instrumentation-sdk/{_core.__version__}",
        }
        if self.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        try:
            connection = self._connect(self.timeout)
            connection.timeout = self.timeout
            connection.request("POST", self._path, body=body, headers=headers)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("OTLP request deadline passed")
            if connection.sock is not None:
                connection.sock.settimeout(remaining)  # the answer must come within the deadline
            response = connection.getresponse()
            answer = response.read()
            status = response.status
            retry_after = _retry_after(response.getheader("Retry-After"))
            if response.will_close:
                self._close()
        except (OSError, http.client.HTTPException) as error:
            self._close()
            raise ExportError(f"OTLP request to {self.url} failed: {error!r}") from error
        if 200 <= status < 300:
            return self._partial_success(answer)
        detail = answer[:200].decode("utf-8", "replace")
        message = f"OTLP endpoint {self.url} answered {status}: {detail}"
        if status in RETRYABLE_STATUSES:
            raise ExportError(message, retryable=True, retry_after=retry_after)
        raise ExportError(message, retryable=False)

    def _partial_success(self, answer: bytes) -> int:
        if not answer:
            return 0
        try:
            if self.protocol == "http/protobuf":
                rejected, message = _core.otlp_partial_success(answer)
            else:
                partial = json.loads(answer).get("partialSuccess") or {}
                rejected = int(partial.get("rejectedSpans") or 0)
                message = str(partial.get("errorMessage") or "")
        except (ValueError, AttributeError, TypeError):
            return 0  # a 2xx is a success, whatever its body
        if rejected or message:
            logger.warning(
                "instrumentation-sdk: the OTLP endpoint rejected %d span(s): %s", rejected, message
            )
        return max(0, rejected)

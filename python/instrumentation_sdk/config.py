"""Pipeline settings: defaults, ``INSTRUMENTATION_SDK_*`` environment variables, validation.

Explicit configuration (``configure(...)``) that is wrong raises ``ValueError`` at once. Wrong
values in the environment never raise into the application: the pipeline starts lazily on the
first span, so a bad variable is logged once and its default used instead.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeAlias

from . import _core
from .export import Exporter, ExportError, export_format
from .prices import PricesSource, load_prices

__all__ = ["ENV_PREFIX", "ExportError", "Exporter", "Processor", "Settings", "settings_from_env"]

#: A processor: a built-in one (``instrumentation_sdk.processors``), which runs in the core, or a
#: callable taking a record and returning it (possibly changed) or ``None`` to drop it.
Processor: TypeAlias = _core.RustProcessor | Callable[[dict[str, Any]], dict[str, Any] | None]

#: OpenTelemetry's switch for recording prompts and completions (GenAI instrumentations).
OTEL_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

ENV_PREFIX = "INSTRUMENTATION_SDK_"
EXPORTER_NAMES = ("sqlite", "jsonl", "console", "memory", "otlp", "none")
PII_MODES = ("off", "detect", "mask", "hash")
INJECTION_MODES = ("off", "detect", "block")
#: The span buffer is allocated up front; the Rust core refuses more slots than this.
MAX_BUFFER_CAPACITY = 1 << 22
#: Longer waits than this cannot be expressed to the platform's lock primitives.
MAX_SECONDS = min(threading.TIMEOUT_MAX, 365 * 24 * 3600.0)


#: Settings that are ints in a range (checked by ``_check_field``).
_INT_FIELDS = (
    "batch_size",
    "buffer_capacity",
    "max_value_bytes",
    "max_content_bytes",
    "max_span_bytes",
    "export_retries",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """One pipeline's settings. Every field has an ``INSTRUMENTATION_SDK_<FIELD>`` variable."""

    exporter: Exporter | str = "sqlite"
    batch_size: int = 512
    flush_interval: float = 1.0
    buffer_capacity: int = 16384
    max_value_bytes: int = 16384
    service_name: str = "unknown_service"
    export_retries: int = 3
    retry_backoff: float = 0.2
    retry_backoff_max: float = 5.0
    exit_timeout: float = 5.0
    jsonl_path: str = "spans.jsonl"
    sqlite_path: str | None = field(default=None)
    #: Run on the flusher, in order, on each finished span before export (built-in ones first).
    processors: tuple[Processor, ...] = ()
    #: Record prompts and completions (off by default: they may hold personal data).
    capture_content: bool = False
    #: Bound on a captured prompt or completion (a message list by its JSON size).
    max_content_bytes: int = 65536
    #: The SQLite store's retention: bytes of pages in use, and the age of the oldest span in
    #: seconds (0: unbounded). The oldest spans are deleted first.
    store_max_bytes: int = 1 << 30
    store_max_age: float = 30 * 86400.0
    #: Bound on one exported span: each text field and metadata key to ``max_value_bytes``,
    #: and the whole span (metadata entries and events past it are left out).
    max_span_bytes: int = 1 << 20
    #: Prices merged over the shipped table for the SQLite store's ``cost_usd``: a mapping of
    #: model -> ``{"input", "cached_input", "output"}`` (USD per million tokens) or a JSON file.
    prices: PricesSource | None = None
    #: PII in spans: ``"off"``, ``"detect"`` (count by kind in ``pii_findings``), ``"mask"``
    #: (``<KIND>``) or ``"hash"`` (``<KIND:hmac>``, keyed by ``pii_hash_key``). On the flusher.
    pii: str = "off"
    #: Prompt injection: ``"off"``, ``"detect"`` (``injection_score``/``injection_rules`` of the
    #: captured prompt) or ``"block"`` (``PromptInjectionError`` on entering a flagged span).
    injection: str = "off"
    #: The HMAC key of ``pii="hash"`` and ``mask_pii(mode="hash")`` (shared across processes
    #: to get the same tokens everywhere). Never exported or logged.
    pii_hash_key: str | None = field(default=None, repr=False)
    #: The model tier of ``injection="detect"``/``"block"``: a callable ``text -> probability``
    #: (0..1) that the prompt is an attack, combined with the rules' score as independent
    #: evidence. A model that raises or answers garbage is a fault (counted, logged once) and
    #: the rules' verdict stands. No environment variable (it is a Python object).
    injection_model: Callable[[str], float] | None = None

    def validated(self) -> Settings:
        """Return self, or raise ``ValueError`` naming the first bad field."""
        for name in _INT_FIELDS:
            _check_field(name, getattr(self, name))
        for name in ("flush_interval", "retry_backoff", "retry_backoff_max", "exit_timeout"):
            _check_field(name, getattr(self, name))
        _check_field("store_max_bytes", self.store_max_bytes)
        _check_field("store_max_age", self.store_max_age)
        _check_field("service_name", self.service_name)
        _check_field("exporter", self.exporter)
        _check_field("processors", self.processors)
        _check_field("capture_content", self.capture_content)
        if self.sqlite_path is not None:
            _check_field("sqlite_path", self.sqlite_path)
        if self.prices is not None:
            _check_field("prices", self.prices)
        _check_field("pii", self.pii)
        _check_field("injection", self.injection)
        _check_field("pii_hash_key", self.pii_hash_key)
        _check_field("injection_model", self.injection_model)
        if self.pii == "hash" and not self.pii_hash_key:
            raise ValueError(
                "pii='hash' needs pii_hash_key (a secret str of at least 16 characters; "
                "or INSTRUMENTATION_SDK_PII_HASH_KEY)"
            )
        if self.batch_size > self.buffer_capacity:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed buffer_capacity "
                f"({self.buffer_capacity})"
            )
        return self

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (unknown names raise ``TypeError``)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        return replace(self, **overrides)


def _check_field(name: str, value: object) -> None:
    """Raise ``ValueError`` if one field's value is out of its own range."""
    if name in _INT_FIELDS:
        low = {"export_retries": 0, "max_span_bytes": 1024}.get(name, 1)
        high = MAX_BUFFER_CAPACITY if name in ("batch_size", "buffer_capacity") else 1 << 40
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
    elif name in ("flush_interval", "retry_backoff", "retry_backoff_max", "exit_timeout"):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= MAX_SECONDS
        ):
            raise ValueError(
                f"{name} must be a number of seconds above 0 and at most {MAX_SECONDS:g}, "
                f"got {value!r}"
            )
    elif name == "store_max_bytes":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1 << 62:
            raise ValueError(
                f"store_max_bytes must be an int from 0 (unbounded) to {1 << 62}, got {value!r}"
            )
    elif name == "store_max_age":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_SECONDS * 100
        ):
            raise ValueError(
                f"store_max_age must be a number of seconds from 0 (unbounded) to "
                f"{MAX_SECONDS * 100:g}, got {value!r}"
            )
    elif name == "sqlite_path":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"sqlite_path must be a non-empty str or os.PathLike, got {value!r}")
    elif name == "service_name":
        if not isinstance(value, str) or not value:
            raise ValueError(f"service_name must be a non-empty str, got {value!r}")
    elif name == "exporter":
        if isinstance(value, str):
            if value not in EXPORTER_NAMES:
                raise ValueError(
                    f"exporter must be one of {', '.join(EXPORTER_NAMES)} or an object with "
                    f"export(batch), got {value!r}"
                )
        elif isinstance(value, type):
            raise ValueError(
                f"exporter must be an instance, got the class {value.__name__} "
                f"(did you mean {value.__name__}()?)"
            )
        elif hasattr(value, "export_format"):
            export_format(value)  # raises ValueError naming what is missing
        elif not callable(getattr(value, "export", None)):
            raise ValueError(
                f"exporter must have an export(batch) method, got {type(value).__name__}"
            )
    elif name == "processors":
        _check_processors(value)
    elif name == "prices":
        try:
            load_prices(value)  # type: ignore[arg-type]
        except TypeError as error:
            raise TypeError(str(error)) from None
    elif name == "capture_content" and not isinstance(value, bool):
        raise ValueError(f"capture_content must be True or False, got {value!r}")
    elif name == "pii" and value not in PII_MODES:
        raise ValueError(f"pii must be one of {', '.join(map(repr, PII_MODES))}, got {value!r}")
    elif name == "injection" and value not in INJECTION_MODES:
        raise ValueError(
            f"injection must be one of {', '.join(map(repr, INJECTION_MODES))}, got {value!r}"
        )
    elif (
        name == "pii_hash_key"
        and value is not None
        and (not isinstance(value, str) or len(value) < 16)
    ):
        # Not the value: it is a secret.
        raise ValueError("pii_hash_key must be a str of at least 16 characters")
    elif name == "injection_model" and value is not None and not callable(value):
        raise TypeError(
            "injection_model must be a callable text -> probability (0..1), "
            f"got {type(value).__name__}"
        )


def _check_processors(value: object) -> None:
    if not isinstance(value, tuple | list):
        raise ValueError(f"processors must be a list, got {type(value).__name__}")
    seen_python = None
    for index, processor in enumerate(value):
        if isinstance(processor, _core.RustProcessor):
            if seen_python is not None:
                raise ValueError(
                    f"processors[{index}] ({processor!r}) comes after the Python processor "
                    f"processors[{seen_python}]: built-in processors run in the core before any "
                    "Python one, so list them first"
                )
        elif callable(processor):
            if seen_python is None:
                seen_python = index
        else:
            raise ValueError(
                f"processors[{index}] must be a built-in processor or a callable taking a "
                f"record, got {type(processor).__name__}"
            )


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "exporter": str.strip,
    "batch_size": int,
    "flush_interval": float,
    "buffer_capacity": int,
    "max_value_bytes": int,
    "max_content_bytes": int,
    "capture_content": _parse_bool,
    "service_name": str.strip,
    "export_retries": int,
    "retry_backoff": float,
    "retry_backoff_max": float,
    "exit_timeout": float,
    "jsonl_path": str,
    "sqlite_path": str,
    "store_max_bytes": int,
    "store_max_age": float,
    "max_span_bytes": int,
    "prices": str,
    "pii": str.strip,
    "injection": str.strip,
    "pii_hash_key": str,
}


def settings_from_env(
    environ: Mapping[str, str] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Settings:
    """Defaults overridden by ``INSTRUMENTATION_SDK_*`` (and ``OTEL_SERVICE_NAME``).

    With ``on_error`` given, each bad variable is reported through it and skipped; without it,
    the first bad variable raises ``ValueError``.
    """
    env = os.environ if environ is None else environ
    overrides: dict[str, Any] = {}
    otel_service = env.get("OTEL_SERVICE_NAME", "").strip()
    if otel_service:
        overrides["service_name"] = otel_service
    if env.get(f"{ENV_PREFIX}DB"):
        overrides["sqlite_path"] = env[f"{ENV_PREFIX}DB"]
    otel_capture = env.get(OTEL_CAPTURE_CONTENT, "").strip()
    if otel_capture:
        try:
            overrides["capture_content"] = _parse_bool(otel_capture)
        except ValueError as error:
            if on_error is None:
                raise ValueError(
                    f"ignoring {OTEL_CAPTURE_CONTENT}={otel_capture!r}: {error}"
                ) from None
            on_error(f"ignoring {OTEL_CAPTURE_CONTENT}={otel_capture!r}: {error}")

    def reject(message: str) -> None:
        if on_error is None:
            raise ValueError(message)
        on_error(message)

    raw_values: dict[str, str] = {}
    for name, parse in _PARSERS.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = parse(raw)
            if name not in ("jsonl_path", "sqlite_path"):
                _check_field(name, value)
        except (ValueError, TypeError) as error:
            shown = "<hidden>" if name == "pii_hash_key" else repr(raw)
            reject(f"ignoring {variable}={shown}: {error}")
            continue
        if name == "capture_content":
            # Either variable turns capture on: the SDK's own cannot switch OTel's off.
            value = value or overrides.get("capture_content", False)
        overrides[name] = value
        raw_values[name] = raw
    # Checks across fields, on the final combination.
    settings = Settings(**overrides)
    if settings.batch_size > settings.buffer_capacity:
        dropped = "batch_size" if "batch_size" in raw_values else "buffer_capacity"
        reject(
            f"ignoring {ENV_PREFIX}{dropped.upper()}={raw_values[dropped]!r}: batch_size "
            f"({settings.batch_size}) must not exceed buffer_capacity ({settings.buffer_capacity})"
        )
        overrides.pop(dropped)
        settings = Settings(**overrides)
        if settings.batch_size > settings.buffer_capacity:
            settings = replace(settings, batch_size=settings.buffer_capacity)
    return settings

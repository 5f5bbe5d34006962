"""Pipeline settings: defaults, ``INSTRUMENTATION_SDK_*`` environment variables, validation.

Explicit configuration (``configure(...)``) that is wrong raises ``ValueError`` at once. Wrong
values in the environment never raise into the application: the pipeline starts lazily on the
first span, so a bad variable is logged once and its default used instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

__all__ = ["ENV_PREFIX", "Exporter", "Settings", "settings_from_env"]

ENV_PREFIX = "INSTRUMENTATION_SDK_"
EXPORTER_NAMES = ("sqlite", "jsonl", "console", "memory", "none")


@runtime_checkable
class Exporter(Protocol):
    """Anything with ``export(batch)``; raising means the batch failed (it is retried).

    An optional ``shutdown()`` is called when the pipeline stops.
    """

    def export(self, batch: list[dict[str, Any]]) -> None: ...


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

    def validated(self) -> Settings:
        """Return self, or raise ``ValueError`` naming the first bad field."""
        for name in ("batch_size", "buffer_capacity", "max_value_bytes"):
            _positive_int(name, getattr(self, name))
        _non_negative_int("export_retries", self.export_retries)
        for name in ("flush_interval", "retry_backoff", "retry_backoff_max", "exit_timeout"):
            _positive_number(name, getattr(self, name))
        if self.batch_size > self.buffer_capacity:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed buffer_capacity "
                f"({self.buffer_capacity})"
            )
        if not isinstance(self.service_name, str) or not self.service_name:
            raise ValueError(f"service_name must be a non-empty str, got {self.service_name!r}")
        if isinstance(self.exporter, str):
            if self.exporter not in EXPORTER_NAMES:
                raise ValueError(
                    f"exporter must be one of {', '.join(EXPORTER_NAMES)} or an object with "
                    f"export(batch), got {self.exporter!r}"
                )
        elif not callable(getattr(self.exporter, "export", None)):
            raise ValueError(
                f"exporter must have an export(batch) method, got {type(self.exporter).__name__}"
            )
        return self

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (unknown names raise ``TypeError``)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        return replace(self, **overrides)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _positive_number(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "exporter": str.strip,
    "batch_size": int,
    "flush_interval": float,
    "buffer_capacity": int,
    "max_value_bytes": int,
    "service_name": str.strip,
    "export_retries": int,
    "retry_backoff": float,
    "retry_backoff_max": float,
    "exit_timeout": float,
    "jsonl_path": str,
    "sqlite_path": str,
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
    for name, parse in _PARSERS.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = parse(raw)
            Settings(**{**overrides, name: value}).validated()
        except (ValueError, TypeError) as error:
            message = f"ignoring {variable}={raw!r}: {error}"
            if on_error is None:
                raise ValueError(message) from None
            on_error(message)
            continue
        overrides[name] = value
    return Settings(**overrides)

"""The OpenAPI 3.1 description of the dashboard's JSON API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from .queries import MAX_LIMIT, MAX_POINTS

__all__ = ["build_openapi"]


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_TIME = {"type": "string", "pattern": r"^\s*(\d+|\d+\s*[smhdw])\s*$"}
_FILTERS = [
    _param("model", "only spans of this model (exact)"),
    _param("provider", "only spans of this provider"),
    _param("service", "only spans of this service"),
    _param(
        "status",
        "only spans with this status (empty: any)",
        {"enum": ["", "unset", "ok", "error"]},
    ),
    _param("session_id", "only spans of this session"),
    _param("user_id", "only spans of this user"),
    _param(
        "q",
        "a substring of the span name, error type or error message (no NUL character)",
        {"type": "string", "pattern": "^[^\\x00]*$"},
    ),
    _param(
        "since",
        "start at or after: Unix nanoseconds, or a window such as 15m, 1h, 30d (back from the "
        "end of the current minute)",
        _TIME,
    ),
    _param("until", "start before: Unix nanoseconds, or a window ago (as since)", _TIME),
]
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}
_SPAN = {
    "type": "object",
    "description": "an exported span record, plus duration_ms, cost_usd and time_to_first_token_ms",
    "required": ["trace_id", "span_id", "name", "model", "status", "start_time_unix_nano"],
    "properties": {
        "trace_id": {"type": "string"},
        "span_id": {"type": "string"},
        "parent_span_id": _NULLABLE_STR,
        "name": {"type": "string"},
        "model": {"type": "string"},
        "provider": _NULLABLE_STR,
        "service_name": _NULLABLE_STR,
        "user_id": _NULLABLE_STR,
        "session_id": _NULLABLE_STR,
        "status": {"enum": ["unset", "ok", "error"]},
        "error_type": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
        "start_time_unix_nano": {"type": "integer"},
        "end_time_unix_nano": {"type": "integer"},
        "metadata": {"type": "object"},
        "events": {"type": "array"},
        "prompt": {},
        "completion": {},
        "duration_ms": {"type": "number"},
        "cost_usd": _NULLABLE_NUMBER,
        "time_to_first_token_ms": _NULLABLE_NUMBER,
    },
}
_AGGREGATE = {
    "count": {"type": "integer"},
    "errors": {"type": "integer"},
    "error_rate": _NULLABLE_NUMBER,
    "p50_ms": _NULLABLE_NUMBER,
    "p95_ms": _NULLABLE_NUMBER,
    "p99_ms": _NULLABLE_NUMBER,
    "ttft_p50_ms": _NULLABLE_NUMBER,
    "ttft_p95_ms": _NULLABLE_NUMBER,
    "prompt_tokens": _NULLABLE_INT,
    "completion_tokens": _NULLABLE_INT,
    "cost_usd": _NULLABLE_NUMBER,
}
_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {
            "description": "a bad or unknown query parameter, or until not after since",
            **error,
        },
        "401": {"description": "the auth token is missing or wrong", **error},
        "404": {"description": "nothing found", **error},
        "503": {"description": "no span database at the path", **error},
    }


def _path_id(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def build_openapi(version: str) -> dict[str, Any]:
    """The OpenAPI document (``version`` is the package's)."""
    span_ref = {"$ref": "#/components/schemas/Span"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "instrumentation-sdk dashboard API",
            "version": version,
            "description": (
                "Read the local span store: filtered pages of spans, traces, sessions, "
                "statistics and time series. Latency percentiles are within 0.5% of exact."
            ),
        },
        "paths": {
            "/api/spans": {
                "get": {
                    "summary": "Spans matching the filters, newest first, a page at a time",
                    "parameters": [
                        *_FILTERS,
                        _param(
                            "limit",
                            f"spans per page (default 50, at most {MAX_LIMIT})",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        ),
                        _param("cursor", "next_cursor of the previous page"),
                    ],
                    "responses": _ok(
                        {
                            "type": "object",
                            "required": ["spans", "next_cursor", "scan_bounded"],
                            "properties": {
                                "spans": {"type": "array", "items": span_ref},
                                "next_cursor": _NULLABLE_STR,
                                "scan_bounded": {
                                    "type": "boolean",
                                    "description": (
                                        "a text filter read its bound of spans (only on a "
                                        "store not yet migrated to schema 5): follow "
                                        "next_cursor for older matches"
                                    ),
                                },
                            },
                        },
                        "a page of spans",
                    ),
                }
            },
            "/api/traces/{trace_id}": {
                "get": {
                    "summary": "Every span of one trace, oldest first",
                    "parameters": [
                        _path_id(
                            "trace_id",
                            "the trace id (32 hex digits)",
                            {"type": "string", "pattern": "^[0-9a-fA-F]{1,32}$"},
                        )
                    ],
                    "responses": _ok(
                        {
                            "type": "object",
                            "properties": {
                                "trace_id": {"type": "string"},
                                "spans": {"type": "array", "items": span_ref},
                            },
                        },
                        "the trace",
                    ),
                }
            },
            "/api/sessions/{session_id}": {
                "get": {
                    "summary": "The traces of one session (conversation), oldest first",
                    "parameters": [
                        _path_id("session_id", "the session id, percent-encoded (%2F for /)")
                    ],
                    "responses": _ok(
                        {
                            "type": "object",
                            "properties": {
                                "session_id": {"type": "string"},
                                "total": {
                                    "type": "object",
                                    "description": "traces, spans, errors, tokens and cost "
                                    "of the whole session",
                                },
                                "traces": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                        "the session's traces",
                    ),
                }
            },
            "/api/stats": {
                "get": {
                    "summary": "Counts, errors, latency and TTFT percentiles, tokens and cost "
                    "per model, service or provider",
                    "parameters": [
                        *_FILTERS,
                        _param(
                            "by",
                            "group by (default model)",
                            {"enum": ["model", "provider", "service"]},
                        ),
                    ],
                    "responses": _ok(
                        {
                            "type": "object",
                            "properties": {
                                "by": {"type": "string"},
                                "filter": {"type": "object"},
                                "groups": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {"group": _NULLABLE_STR, **_AGGREGATE},
                                    },
                                },
                            },
                        },
                        "one entry per group, busiest first",
                    ),
                }
            },
            "/api/timeseries": {
                "get": {
                    "summary": "The same aggregates in equal time buckets (for the charts)",
                    "parameters": [
                        *_FILTERS,
                        _param(
                            "points",
                            f"buckets (default 60, at most {MAX_POINTS}); over a day or more "
                            "the buckets are whole hours (or days), so there may be fewer",
                            {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
                        ),
                    ],
                    "responses": _ok(
                        {
                            "type": "object",
                            "properties": {
                                "since_unix_nano": {"type": "integer"},
                                "until_unix_nano": {"type": "integer"},
                                "bucket_ns": {"type": "integer"},
                                "points": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "start_unix_nano": {"type": "integer"},
                                            **_AGGREGATE,
                                        },
                                    },
                                },
                            },
                        },
                        "one entry per bucket, oldest first",
                    ),
                }
            },
        },
        "components": {"schemas": {"Span": _SPAN, "Error": _ERROR}},
    }

"""The OpenAPI 3.1 document, generated from the msgspec Structs in ``schemas.py``, and the pages
that render it (Swagger UI at ``/docs``, ReDoc at ``/redoc``; they load their scripts from the
jsDelivr CDN, like FastAPI's and Litestar's)."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .schemas import (
    MAX_BATCH_ITEMS,
    MESSAGE_SCHEMA,
    BatchRequest,
    BatchResponse,
    CountRequest,
    CountResponse,
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
)

__all__ = ["build_openapi", "docs_page", "redoc_page"]

_REF: Final = "#/components/schemas/{name}"
_JSON: Final = "application/json"
_ERROR_REF: Final = {"$ref": _REF.format(name="ErrorResponse")}

_ERRORS: Final = {
    "400": "The body is not JSON (malformed, truncated, empty, invalid UTF-8).",
    "401": "The bearer token is missing or wrong.",
    "413": "The body is larger than the service's limit.",
    "422": "The JSON has the wrong shape; `field` names the offending field.",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def _post(
    summary: str,
    description: str,
    request: str,
    response: str,
    example: dict[str, Any],
    secured: bool,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(_ref(response), "The counts.")}
    for status, text in _ERRORS.items():
        if status != "401" or secured:
            responses[status] = _json(_ERROR_REF, text)
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "operationId": response[0].lower() + response[1:].replace("Response", ""),
        "tags": ["token counting"],
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": _ref(request), "example": example}},
        },
        "responses": responses,
    }
    if secured:
        operation["security"] = [{"bearerAuth": []}]
    return {"post": operation}


def _get(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    secured: bool = False,
    tag: str = "service",
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "tags": [tag],
        "responses": responses,
    }
    if secured:
        responses["401"] = _json(_ERROR_REF, _ERRORS["401"])
        operation["security"] = [{"bearerAuth": []}]
    return {"get": operation}


def build_openapi(version: str, *, secured: bool, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service (as a dict, ready to encode)."""
    _, components = msgspec.json.schema_components(
        [
            CountRequest,
            CountResponse,
            BatchRequest,
            BatchResponse,
            ModelsResponse,
            HealthResponse,
            ErrorResponse,
        ],
        ref_template=_REF,
    )
    for schema in components.values():
        if schema.get("required") == []:
            del schema["required"]
    # msgspec sees `dict[str, Any]`; publish what the handler's message check accepts.
    for schema in components.values():
        messages = schema.get("properties", {}).get("messages")
        if messages is not None:
            messages["items"] = MESSAGE_SCHEMA
    # msgspec cannot express "exactly one of prompt or messages"; the handler enforces it.
    components["CountRequest"]["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}]

    count_description = (
        "Counts the tokens of `prompt` (a string) or `messages` (chat messages) as `model` "
        "would see them: exact for OpenAI models (the same numbers as `tiktoken`), a "
        "calibrated estimate for any other model. `model` defaults to `gpt-4o`. Unknown "
        f"fields are ignored. Bodies over {max_body_bytes} bytes are refused with 413."
    )
    batch_description = (
        f"Counts up to {MAX_BATCH_ITEMS} items, each like a single count request, in parallel "
        "in the Rust core (items are grouped by model). Results come in the items' order."
    )
    paths: dict[str, Any] = {
        "/v1/token-counting/count": _post(
            "Count a prompt's tokens",
            count_description,
            "CountRequest",
            "CountResponse",
            {"prompt": "Hello world!", "model": "gpt-4o"},
            secured,
        ),
        "/v1/token-counting/count/batch": _post(
            "Count many prompts' tokens",
            batch_description,
            "BatchRequest",
            "BatchResponse",
            {
                "items": [
                    {"prompt": "Hello world!"},
                    {"messages": [{"role": "user", "content": "Hi"}]},
                ]
            },
            secured,
        ),
        "/v1/models": _get(
            "listModels",
            "The model-name-to-encoding table",
            _json(_ref("ModelsResponse"), "Exact names, then prefixes in the order tried."),
            secured,
            tag="token counting",
        ),
        "/healthz": _get("health", "Liveness", _json(_ref("HealthResponse"), "The service is up.")),
        "/metrics": _get(
            "metrics",
            "Prometheus metrics",
            {
                "description": "Prometheus text exposition format, version 0.0.4.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        ),
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "instrumentation-sdk token counting",
            "version": version,
            "description": (
                "Exact local token counts for OpenAI models, from the instrumentation-sdk Rust "
                "core. Errors are JSON `ErrorResponse` bodies, never stack traces."
            ),
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
    return document


_SWAGGER: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>instrumentation-sdk token counting</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""

_REDOC: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>instrumentation-sdk token counting</title>
</head><body><redoc spec-url="openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>
"""


def docs_page() -> bytes:
    """Swagger UI for ``openapi.json`` (a relative URL, so a mounted app finds its own)."""
    return _SWAGGER.encode()


def redoc_page() -> bytes:
    """ReDoc for ``openapi.json``."""
    return _REDOC.encode()

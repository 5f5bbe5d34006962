"""The service's request and response bodies as msgspec Structs.

msgspec decodes and validates requests straight into these types, encodes the responses, and
generates the OpenAPI components from them (``openapi.py``), so the documented schema is the
one enforced.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..tokens import DEFAULT_MODEL

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_MODEL_NAME_CHARS",
    "BatchRequest",
    "BatchResponse",
    "CountRequest",
    "CountResponse",
    "ErrorResponse",
    "ExactModel",
    "HealthResponse",
    "ModelPrefix",
    "ModelsResponse",
]

#: The most items one batch request may hold.
MAX_BATCH_ITEMS: Final = 10_000
#: The longest model name accepted.
MAX_MODEL_NAME_CHARS: Final = 256

_MESSAGE_EXAMPLE = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello world!"},
]

#: One message as ``messages.check_messages`` accepts it, published in the OpenAPI document so
#: that a client generated from it sends nothing the check refuses.
MESSAGE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "role": {"type": "string"},
        "name": {"type": "string"},
        "content": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "additionalProperties": True,
                    },
                },
                {"type": "null"},
            ]
        },
    },
    "additionalProperties": True,
}

Prompt = Annotated[str, Meta(description="The text to count.", examples=["Hello world!"])]
Messages = Annotated[
    list[dict[str, Any]],
    Meta(
        description=(
            "Chat messages, counted by the OpenAI cookbook rule: 3 tokens per message, the "
            "tokens of every string value (`role`, `content`, ...; `content` may be a list of "
            "parts, whose `text` parts count), 1 more for a `name`, and 3 to prime the reply."
        ),
        examples=[_MESSAGE_EXAMPLE],
    ),
]
ModelName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_MODEL_NAME_CHARS,
        description=(
            "The model whose tokenizer counts. OpenAI models (see `GET /v1/models`) are counted "
            "exactly; any other name gets a calibrated estimate."
        ),
        examples=[DEFAULT_MODEL],
    ),
]


class CountRequest(msgspec.Struct, kw_only=True):
    """What to count: exactly one of `prompt` or `messages`, and optionally the `model`."""

    prompt: Prompt | UnsetType = UNSET
    messages: Messages | UnsetType = UNSET
    model: ModelName = DEFAULT_MODEL


class CountResponse(msgspec.Struct):
    """A prompt's token count, the same numbers as `instrumentation_sdk.count_tokens`."""

    model: Annotated[str, Meta(description="The model counted for, as given.")]
    prompt_tokens: Annotated[int, Meta(ge=0, description="The prompt's tokens.")]
    token_count_method: Annotated[
        Literal["tiktoken", "heuristic"],
        Meta(description="`tiktoken`: exact BPE count; `heuristic`: a calibrated estimate."),
    ]
    encoding: Annotated[
        str | None,
        Meta(description="The BPE encoding used (`o200k_base`...); null for an estimate."),
    ]


class BatchRequest(msgspec.Struct, kw_only=True):
    """Many prompts at once; items may name different models."""

    items: Annotated[
        list[CountRequest],
        Meta(max_length=MAX_BATCH_ITEMS, description="Each item is a count request."),
    ]


class BatchResponse(msgspec.Struct):
    """One result per item, in the items' order, and their sum."""

    results: list[CountResponse]
    total_prompt_tokens: Annotated[int, Meta(ge=0)]


class ExactModel(msgspec.Struct):
    """A model name that maps to an encoding as it is."""

    name: str
    encoding: str


class ModelPrefix(msgspec.Struct):
    """Model names that start with `prefix` map to `encoding` (first match wins, in order)."""

    prefix: str
    encoding: str


class ModelsResponse(msgspec.Struct):
    """The model table: exact names first, then prefixes in order; anything else is estimated."""

    default_model: str
    exact: list[ExactModel]
    prefixes: list[ModelPrefix]
    fallback_method: Literal["heuristic"] = "heuristic"


class HealthResponse(msgspec.Struct):
    """The service is up."""

    status: Literal["ok"]
    version: str


class ErrorResponse(msgspec.Struct, omit_defaults=True):
    """Every error: its HTTP status, a short code, what went wrong, and the field when one did."""

    error: Annotated[
        str,
        Meta(
            description=(
                "bad_request, unauthorized, not_found, method_not_allowed, payload_too_large, "
                "validation_error or internal_error"
            )
        ),
    ]
    status: int
    detail: str
    field: (
        Annotated[
            str,
            Meta(description="JSONPath of the offending field: `$.prompt`, `$.items[2].model`."),
        ]
        | UnsetType
    ) = UNSET
